"""The controller's HTTP API (aiohttp): history, live queues and agents, agent actions, health, metrics.

Live figures come from the engine (it is the truth about now); history comes from the store.
Agent actions go through ``Telephony.feed`` like any other event, so the engine decides and logs
them exactly as it would a phone's. Every response is JSON (``/metrics`` is Prometheus text);
every error is ``{"error": code, "message": text}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.acd import events as ev
from controller.acd.engine import LIVE_OFFER_STATES, CallState, OfferState, Presence
from controller.api import views
from controller.api.auth import Auth, AuthError, Principal
from controller.api.errors import MAX_BODY, REJECTED, ApiError, errors_middleware
from controller.api.metrics import CONTENT_TYPE, Metrics
from controller.api.openapi import MAX_LIMIT, MAX_OFFSET, MAX_REASON, openapi_spec
from controller.logs import quiet_malformed_requests
from controller.panel import routes as panel_routes
from controller.panel.routes import PanelConfig
from controller.store import reports

if TYPE_CHECKING:
    from controller.app import Controller
    from controller.panel.hub import PanelHub
    from controller.store.writer import HistoryWriter

__all__ = ["ApiContext", "build_app", "serve"]

log = logging.getLogger("controller.api")

AGENT_ACTIONS = ("login", "logout", "pause", "ready")
OFFER_ACTIONS = ("accept", "reject")
CTX = web.AppKey("acd_api", "ApiContext")
PANEL = web.AppKey("acd_panel", "PanelHub")
PRINCIPAL = web.RequestKey("acd_principal", Principal)


@dataclass
class ApiContext:
    controller: Controller
    auth: Auth
    db: AsyncEngine | None = None
    writer: HistoryWriter | None = None
    metrics: Metrics | None = None
    service_level: float = 20.0
    db_timeout: float = 2.0
    panel: PanelHub | None = None
    panel_config: PanelConfig = field(default_factory=PanelConfig)
    app_hooks: list[Callable[[web.Application], None]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    reload: Callable[[], Awaitable[Any]] | None = None  # the queue file (controller.reload)

    def wall(self, at: float | None) -> str | None:
        """Engine clock time -> ISO UTC, as people read it (the demo's fast clock included)."""
        return views.wall_for(self.controller.clock)(at)


# --------------------------------------------------------------------------- helpers


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def reply(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, default=_default))


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CTX]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _principal(request: web.Request) -> Principal:
    return identify(_ctx(request).auth, request.headers.get("Authorization"))


def admin_only(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not _principal(request).is_admin:
            raise ApiError(403, "forbidden", "this endpoint needs the admin token")
        return await handler(request)

    wrapped.__doc__ = handler.__doc__
    return wrapped


def any_token(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        request[PRINCIPAL] = _principal(request)
        return await handler(request)

    wrapped.__doc__ = handler.__doc__
    return wrapped


def _check_params(request: web.Request, known: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query) - set(known))
    if unknown:
        raise ApiError(
            400,
            "bad_request",
            f"unknown query parameter {unknown[0]!r}; known: {', '.join(known) or 'none'}",
        )


def _param_time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            value = datetime.combine(date.fromisoformat(raw), time(0), UTC)
        else:
            value = datetime.fromisoformat(raw)
    except ValueError:  # an empty value is no more absent than "yesterday"
        raise ApiError(
            400,
            "bad_request",
            f"{name}: must be an ISO 8601 date or date-time such as 2026-11-25 or 2026-11-25T08:00:00Z,"
            f" got {raw!r}",
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before any UTC datetime: the earliest one
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def _param_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ApiError(400, "bad_request", f"{name}: must be a whole number {low}-{high}, got {raw!r}")
    return value


async def _db_call(ctx: ApiContext, coro: Awaitable[Any]) -> Any:
    if ctx.db is None:
        raise ApiError(503, "database_unavailable", "no history database is configured")
    try:
        async with asyncio.timeout(ctx.db_timeout):
            return await coro
    except ApiError:
        raise
    except Exception as exc:
        log.warning("history query failed: %s", type(exc).__name__, extra={"error": str(exc)[:200]})
        raise ApiError(
            503, "database_unavailable", "the history database is unavailable right now; try again shortly"
        ) from None


# --------------------------------------------------------------------------- health, metrics, spec


async def healthz(request: web.Request) -> web.Response:
    """Liveness/readiness without a token: ARI connected and database reachable."""
    ctx = _ctx(request)
    ari = bool(ctx.controller.stream.connected)
    database: dict[str, Any] = {"configured": ctx.db is not None}
    db_ok = True
    if ctx.db is not None:
        try:
            async with asyncio.timeout(ctx.db_timeout):
                async with ctx.db.connect() as conn:
                    await conn.execute(text("select 1"))
        except Exception:
            db_ok = False
        database["reachable"] = db_ok
        if ctx.writer is not None:
            database["buffered_records"] = ctx.writer.depth
            database["dropped_records"] = ctx.writer.stats["dropped"]
    ok = ari and db_ok
    body = {"status": "ok" if ok else "degraded", "ari": {"connected": ari}, "database": database}
    if "ha" in ctx.extra:  # hot standby: this replica's role and who holds the lease
        body["role"] = "active"
        body["ha"] = await ctx.extra["ha"]()
    return reply(body, 200 if ok else 503)


@admin_only
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    ctx = _ctx(request)
    if ctx.metrics is None:
        raise ApiError(404, "not_found", "metrics are not enabled")
    return web.Response(body=ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


@any_token
async def me(request: web.Request) -> web.Response:
    """Who this token is: the panel's first call after sign-in."""
    principal: Principal = request[PRINCIPAL]
    if principal.is_admin:
        return reply({"role": "admin", "agent_id": None, "name": None})
    if principal.is_supervisor:
        body = {"role": "supervisor", "agent_id": None, "name": principal.name}
        return reply(body | {"supervisor_id": principal.supervisor_id, "queues": sorted(principal.queues)})
    agent = _ctx(request).controller.engine.agents.get(principal.agent_id or "")
    if agent is None:
        raise ApiError(
            403,
            "forbidden",
            f"agent {principal.agent_id!r} has a token but is not in the queue file; ask the admin",
        )
    return reply({"role": "agent", "agent_id": agent.id, "name": agent.name})


@admin_only
async def admin_reload(request: web.Request) -> web.Response:
    """Reload the queue file: 200 with what changed, or 409 with the validation errors (as at
    start) and nothing changed."""
    ctx = _ctx(request)
    if ctx.reload is None:
        raise ApiError(404, "not_found", "reloading is not available in this process")
    result = (await ctx.reload()).as_dict()
    return reply(result, 200 if result["reloaded"] else 409)


@any_token
async def openapi(request: web.Request) -> web.Response:
    return reply(openapi_spec())


# --------------------------------------------------------------------------- calls


@admin_only
async def list_calls(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    _check_params(request, ("queue", "since", "until", "outcome", "agent", "limit", "offset"))
    outcome = request.query.get("outcome")
    if outcome is not None and outcome not in reports.CALL_OUTCOMES:
        raise ApiError(
            400, "bad_request", f"outcome: must be one of {', '.join(reports.CALL_OUTCOMES)}, got {outcome!r}"
        )
    since, until = _param_time(request, "since"), _param_time(request, "until")
    # until <= since is an empty window, answered with no calls (the spec cannot say "later than")
    limit = _param_int(request, "limit", 50, 1, MAX_LIMIT)
    offset = _param_int(request, "offset", 0, 0, MAX_OFFSET)
    calls, more = await _db_call(
        ctx,
        reports.list_calls(
            ctx.db,  # type: ignore[arg-type]
            queue=request.query.get("queue") or None,
            since=since,
            until=until,
            outcome=outcome,
            agent=request.query.get("agent") or None,
            limit=limit,
            offset=offset,
        ),
    )
    return reply(
        {"calls": calls, "limit": limit, "offset": offset, "next_offset": offset + limit if more else None}
    )


@admin_only
async def get_call(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    _check_params(request, ())
    call_id = request.match_info["call_id"]
    call = await _db_call(ctx, reports.get_call(ctx.db, call_id))  # type: ignore[arg-type]
    if call is None:
        live = ctx.controller.engine.calls.get(call_id)
        if live is None:
            raise ApiError(404, "not_found", f"no call {call_id!r}")
        call = {"id": call_id, "queue": live.queue, "offers": []}
    live = ctx.controller.engine.calls.get(call_id)
    call["live_state"] = live.state.value if live is not None else None
    return reply(call)


# --------------------------------------------------------------------------- queues


@admin_only
async def queues(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    _check_params(request, ("since",))
    since = _param_time(request, "since") or datetime.combine(datetime.now(UTC).date(), time(0), UTC)
    engine = ctx.controller.engine
    now = ctx.controller.clock.now()
    live: dict[str, dict[str, Any]] = {}
    for name in engine.setup.queues:
        live[name] = {"waiting": 0, "offering": 0, "talking": 0, "longest_wait": 0.0, "agents": Counter()}
    for call in engine.calls.values():
        q = live.get(call.queue)
        if q is None:
            continue
        if call.state is CallState.WAITING:
            q["waiting"] += 1
        elif call.state is CallState.OFFERING:
            q["offering"] += 1
        elif call.state is CallState.CONNECTED:
            q["talking"] += 1
        if call.state in (CallState.WAITING, CallState.OFFERING):
            q["longest_wait"] = max(q["longest_wait"], round(now - call.arrived_at, 3))
    for agent in engine.agents.values():
        for queue in agent.penalties:
            if queue in live:
                live[queue]["agents"][agent.status] += 1
    today: dict[str, Any] = {}
    database_error = None
    try:
        today = await _db_call(ctx, reports.queue_today(ctx.db, since, ctx.service_level))  # type: ignore[arg-type]
    except ApiError as exc:
        database_error = exc.message
    out = []
    for name, figures in live.items():
        figures["agents"] = dict(sorted(figures["agents"].items()))
        figures["in_queue"] = figures["waiting"] + figures["offering"]
        out.append(
            {
                "queue": name,
                "live": figures,
                "today": today.get(name) or (None if database_error else reports.empty_today()),
            }
        )
    body: dict[str, Any] = {"since": _iso(since), "service_level_seconds": ctx.service_level, "queues": out}
    if database_error:
        body["database_error"] = database_error
    return reply(body)


# --------------------------------------------------------------------------- agents


def _agent_view(ctx: ApiContext, agent_id: str, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    view = views.agent_view(ctx.controller.engine, agent_id, ctx.wall)
    if stored is not None:
        view["last_call_end"] = stored.get("last_call_end")
    return view


def _agent_or_404(ctx: ApiContext, agent_id: str) -> None:
    if agent_id not in ctx.controller.engine.agents:
        raise ApiError(404, "not_found", f"no agent {agent_id!r}")


async def _stored_agents(ctx: ApiContext) -> dict[str, dict[str, Any]]:
    try:
        return await _db_call(ctx, reports.agent_rows(ctx.db))  # type: ignore[arg-type]
    except ApiError:
        return {}


@admin_only
async def list_agents(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    _check_params(request, ())
    stored = await _stored_agents(ctx)
    agents = [_agent_view(ctx, a, stored.get(a, {})) for a in ctx.controller.engine.agents]
    return reply({"agents": agents})


@any_token
async def get_agent(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    _check_params(request, ())
    agent_id = request.match_info["agent_id"]
    _own(request, agent_id)
    _agent_or_404(ctx, agent_id)
    stored = await _stored_agents(ctx)
    return reply(_agent_view(ctx, agent_id, stored.get(agent_id, {})))


def _own(request: web.Request, agent_id: str) -> None:
    principal: Principal = request[PRINCIPAL]
    if principal.is_supervisor:
        agent = _ctx(request).controller.engine.agents.get(agent_id)
        if agent is None or not principal.supervises(agent.penalties):
            problem = "a supervisor may only act on agents of the queues it supervises"
            raise ApiError(403, "forbidden", problem)
    elif not principal.may_act_for(agent_id):
        raise ApiError(403, "forbidden", "an agent token may only act on its own agent")


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, or nested past Python's stack
        raise ApiError(400, "bad_request", "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the request body must be a JSON object")
    return body


def _agent_action(action: str) -> Handler:
    """The handler of ``POST /api/agents/{agent_id}/<action>`` (one route per action, as documented)."""

    @any_token
    async def handler(request: web.Request) -> web.Response:
        ctx = _ctx(request)
        _check_params(request, ())
        agent_id = request.match_info["agent_id"]
        _own(request, agent_id)
        _agent_or_404(ctx, agent_id)
        body = await _json_body(request)
        unknown = sorted(set(body) - ({"reason"} if action == "pause" else set()))
        if unknown:
            raise ApiError(400, "bad_request", f"unknown field {unknown[0]!r} for {action}")
        agent = ctx.controller.engine.agents[agent_id]
        principal: Principal = request[PRINCIPAL]
        by = principal.label  # kept with the state change in the history
        if action == "login":
            event: ev.Event = ev.AgentLogin(agent_id, by=by)
        elif action == "logout":
            event = ev.AgentLogout(agent_id, by=by)
        elif action == "ready":
            if agent.presence is Presence.LOGGED_OUT:
                raise ApiError(409, "conflict", f"agent {agent_id!r} is logged out; log in first")
            event = ev.AgentReady(agent_id, by=by)
        else:
            event = ev.AgentPause(agent_id, _reason(body.get("reason", "")), by=by)
            if agent.presence is Presence.LOGGED_OUT:
                raise ApiError(409, "conflict", f"agent {agent_id!r} is logged out; log in first")
        # The engine changes the agent, never this handler: it decides and logs as for a phone.
        ctx.controller.shell.feed(event)
        log.info("agent %s via API", action, extra={"agent": agent_id, "by": by, "state": agent.status})
        return reply(_agent_view(ctx, agent_id))

    handler.__doc__ = f"{action} (admin, that agent, or a supervisor of one of its queues)"
    return handler


def _reason(reason: Any) -> str:
    """A pause reason people read in the panel and the log: text, no control characters."""
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ApiError(400, "bad_request", f"reason: must be a string of at most {MAX_REASON} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in reason):
        raise ApiError(400, "bad_request", "reason: must not contain control characters")
    return reason.strip()


@any_token
async def offer_action(request: web.Request) -> web.Response:
    """Accept (desktop mode; confirm mode once answered) or reject a live offer."""
    ctx = _ctx(request)
    _check_params(request, ())
    offer_id, action = request.match_info["offer_id"], request.match_info["action"]
    if action not in OFFER_ACTIONS:
        raise ApiError(
            404, "not_found", f"unknown offer action {action!r}; one of {', '.join(OFFER_ACTIONS)}"
        )
    offer = ctx.controller.engine.offers.get(offer_id)
    principal: Principal = request[PRINCIPAL]
    if offer is None or not principal.may_act_for(offer.agent_id):
        # An agent learns nothing about offers that are not its own, not even that they exist.
        raise ApiError(404, "not_found", f"offer {offer_id!r} is no longer available (or never existed)")
    if offer.state not in LIVE_OFFER_STATES:
        outcome = _value(offer.outcome)
        raise ApiError(409, "conflict", f"offer {offer_id!r} is no longer available ({outcome})")
    before = offer.state
    # The engine decides what a click may do in this queue's acceptance mode.
    if action == "accept":
        ctx.controller.shell.feed(ev.OfferAccepted(offer_id, offer.agent_id))
        if offer.state is before:
            raise ApiError(
                409,
                "conflict",
                "this offer is accepted by answering the phone"
                if before is OfferState.RINGING
                else f"offer {offer_id!r} is already being connected",
            )
    else:
        ctx.controller.shell.feed(ev.OfferRejected(offer_id, offer.agent_id))
    return reply({"offer": offer_id, "state": offer.state.value, "outcome": _value(offer.outcome)})


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


# --------------------------------------------------------------------------- app


def build_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    app[CTX] = ctx
    app[REJECTED] = ctx.metrics.api_rejected if ctx.metrics is not None else Counter()
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    r.add_get("/api/openapi.json", openapi)
    r.add_get("/api/calls", list_calls)
    r.add_get("/api/calls/{call_id}", get_call)
    r.add_get("/api/queues", queues)
    r.add_get("/api/agents", list_agents)
    r.add_get("/api/agents/{agent_id}", get_agent)
    for action in AGENT_ACTIONS:
        r.add_post(f"/api/agents/{{agent_id}}/{action}", _agent_action(action))
    r.add_post("/api/offers/{offer_id}/{action}", offer_action)
    r.add_get("/api/me", me)
    r.add_post("/api/admin/reload", admin_reload)
    if ctx.panel is not None:
        app[PANEL] = ctx.panel
        panel_routes.add_routes(app, ctx.panel_config, PANEL, lambda header: identify(ctx.auth, header))
    for hook in ctx.app_hooks:
        hook(app)
    return app


def identify(auth: Auth, authorization: str | None) -> Principal:
    """The principal for an ``Authorization`` value, or ApiError 401 (for routes added by hooks)."""
    try:
        return auth.identify(authorization)
    except AuthError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner (``await runner.cleanup()`` to stop) and the base URL."""
    quiet_malformed_requests()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname()[1] if sockets else port
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}"
