"""ARI over HTTP: REST routes under ``/ari`` and the events websocket ``/ari/events``.

Behaves like res_ari: basic auth or ``api_key=user:pass`` (401 ``Authentication required``),
unknown resources 404 ``Resource not found``, wrong method 405 ``Invalid method``, error bodies
``{"message": ...}`` except the allocation failure 500 ``{"error": "Allocation failed"}``.
Query parameters may also come in a JSON body, as res_ari accepts.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from controller.sim.apps import RestRecord, WsConn
from controller.sim.errors import AriError
from controller.sim.model import jstr

if TYPE_CHECKING:
    from controller.sim.server import SimAsterisk

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Params = dict[str, list[str]]

_JSON = "application/json"
_NO_CONTENT = 204

ARI_USER = web.RequestKey("ari_user", str)  # who authenticated the request (RestRecord.user)


def _json(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type=_JSON)


def _obj(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(obj, ensure_ascii=False), status=status, content_type=_JSON, headers=headers
    )


def _no_content() -> web.Response:
    return web.Response(status=_NO_CONTENT)


def _first(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _multi(params: Params, name: str) -> list[str]:
    """allowMultiple params: repeated and/or comma separated."""
    out: list[str] = []
    for value in params.get(name, ()):
        out.extend(part.strip() for part in value.split(","))
    return [v for v in out if v]


def _int(params: Params, name: str, default: int) -> int:
    value = _first(params, name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        try:
            return int(float(value))
        except ValueError:
            return 0


def _bool(params: Params, name: str) -> bool:
    return (_first(params, name) or "").lower() in ("true", "yes", "1", "on")


def _require(params: Params, name: str) -> str:
    value = _first(params, name)
    if not value:
        raise AriError(400, f"Missing required parameter: {name}")
    return value


class AriHttp:
    """Builds the aiohttp application that serves one SimAsterisk."""

    def __init__(self, sim: SimAsterisk) -> None:
        self.sim = sim
        self.engine = sim.engine
        self.apps = sim.apps
        self.connections: set[WsConn] = set()

    # ----------------------------------------------------------------------------------------------
    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/ari/events", self.events_ws),
            ("GET", "/ari/asterisk/info", self.asterisk_info),
            ("GET", "/ari/asterisk/ping", self.asterisk_ping),
            ("GET", "/ari/asterisk/variable", self.asterisk_get_var),
            ("POST", "/ari/asterisk/variable", self.asterisk_set_var),
            ("GET", "/ari/applications", self.applications_list),
            ("GET", "/ari/applications/{app}", self.application_get),
            ("POST", "/ari/applications/{app}/subscription", self.application_subscribe),
            ("DELETE", "/ari/applications/{app}/subscription", self.application_unsubscribe),
            ("PUT", "/ari/applications/{app}/eventFilter", self.application_filter),
            ("GET", "/ari/endpoints", self.endpoints_list),
            ("GET", "/ari/endpoints/{tech}", self.endpoints_by_tech),
            ("GET", "/ari/endpoints/{tech}/{resource}", self.endpoint_get),
            ("GET", "/ari/channels", self.channels_list),
            ("POST", "/ari/channels", self.channels_originate),
            ("POST", "/ari/channels/create", self.channels_create),
            ("GET", "/ari/channels/{id}", self.channel_get),
            ("POST", "/ari/channels/{id}", self.channels_originate),
            ("DELETE", "/ari/channels/{id}", self.channel_hangup),
            ("POST", "/ari/channels/{id}/continue", self.channel_continue),
            ("POST", "/ari/channels/{id}/answer", self.channel_answer),
            ("POST", "/ari/channels/{id}/ring", self.channel_ring),
            ("DELETE", "/ari/channels/{id}/ring", self.channel_ring_stop),
            ("POST", "/ari/channels/{id}/progress", self.channel_progress),
            ("POST", "/ari/channels/{id}/dtmf", self.channel_dtmf),
            ("POST", "/ari/channels/{id}/mute", self.channel_mute),
            ("DELETE", "/ari/channels/{id}/mute", self.channel_unmute),
            ("POST", "/ari/channels/{id}/hold", self.channel_hold),
            ("DELETE", "/ari/channels/{id}/hold", self.channel_unhold),
            ("POST", "/ari/channels/{id}/moh", self.channel_moh),
            ("DELETE", "/ari/channels/{id}/moh", self.channel_moh_stop),
            ("POST", "/ari/channels/{id}/silence", self.channel_silence),
            ("DELETE", "/ari/channels/{id}/silence", self.channel_silence),
            ("POST", "/ari/channels/{id}/play", self.channel_play),
            ("POST", "/ari/channels/{id}/play/{playback}", self.channel_play),
            ("GET", "/ari/channels/{id}/variable", self.channel_get_var),
            ("POST", "/ari/channels/{id}/variable", self.channel_set_var),
            ("POST", "/ari/channels/{id}/dial", self.channel_dial),
            ("GET", "/ari/bridges", self.bridges_list),
            ("POST", "/ari/bridges", self.bridges_create),
            ("POST", "/ari/bridges/{id}", self.bridges_create),
            ("GET", "/ari/bridges/{id}", self.bridge_get),
            ("DELETE", "/ari/bridges/{id}", self.bridge_destroy),
            ("POST", "/ari/bridges/{id}/addChannel", self.bridge_add),
            ("POST", "/ari/bridges/{id}/removeChannel", self.bridge_remove),
            ("POST", "/ari/bridges/{id}/moh", self.bridge_moh),
            ("DELETE", "/ari/bridges/{id}/moh", self.bridge_moh_stop),
            ("POST", "/ari/bridges/{id}/play", self.bridge_play),
            ("POST", "/ari/bridges/{id}/play/{playback}", self.bridge_play),
            ("GET", "/ari/playbacks/{id}", self.playback_get),
            ("DELETE", "/ari/playbacks/{id}", self.playback_stop),
            ("POST", "/ari/playbacks/{id}/control", self.playback_control),
        ]
        for method, path, handler in routes:
            r.add_route(method, path, handler)
        return app

    # ----------------------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        user = self._user(request)
        if user is None:
            return _obj(
                {"message": "Authentication required"},
                401,
                {"WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'},
            )
        request[ARI_USER] = user
        sim = self.sim
        path = request.path[4:] if request.path.startswith("/ari/") else request.path
        fault = sim.faults.take(request.method, path)
        if fault is not None and (path == "/events" or (fault.status is not None and not fault.apply)):
            if fault.delay > 0:
                await sim.clock.sleep(fault.delay)
            if fault.status is not None:
                return self._record(request, path, _obj(fault.response_body(), fault.status))
            fault = None  # a slow websocket upgrade: connect now
        resp = await self._handle(request, handler)
        if path == "/events":
            return resp
        if fault is not None:
            self._record(request, path, resp)  # what Asterisk did; the client is told later / otherwise
            if fault.delay > 0:
                await sim.clock.sleep(fault.delay)
            if fault.status is not None:
                return _obj(fault.response_body(), fault.status)
            return resp
        return self._record(request, path, resp)

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except AriError as exc:
            return _obj(exc.body, exc.status, exc.headers or None)
        except web.HTTPMethodNotAllowed as exc:
            return _obj({"message": "Invalid method"}, 405, {"Allow": ",".join(sorted(exc.allowed_methods))})
        except web.HTTPNotFound:
            return _obj({"message": "Resource not found"}, 404)

    def _record(self, request: web.Request, path: str, resp: web.StreamResponse) -> web.StreamResponse:
        """Log the answer with the number of events produced before it (trace order checks)."""
        self.sim.rest_log.append(
            RestRecord(
                request.method,
                path,
                resp.status,
                self.sim.clock.now(),
                self.apps.count,
                request.get(ARI_USER, ""),
            )
        )
        return resp

    def _user(self, request: web.Request) -> str | None:
        """The ARI user whose credentials the request carries (api_key or basic auth), else None."""
        api_key = request.query.get("api_key")
        if api_key is not None:
            decoded = api_key
        else:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
        user, sep, password = decoded.partition(":")
        if not sep or self.sim.users.get(user) != password:
            return None
        return user

    async def _params(self, request: web.Request) -> tuple[Params, dict[str, Any] | None]:
        params: Params = {}
        for key, value in request.query.items():
            if key != "api_key":
                params.setdefault(key, []).append(value)
        body: dict[str, Any] | None = None
        if request.body_exists:
            raw = await request.read()
            if raw.strip():
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    raise AriError(400, "Error parsing request body") from None
                if isinstance(parsed, dict):
                    body = parsed
                    for key, value in parsed.items():
                        if key == "variables" or key in params:
                            continue
                        if isinstance(value, list):
                            params[key] = [_scalar(v) for v in value]
                        else:
                            params[key] = [_scalar(value)]
        return params, body

    @staticmethod
    def _variables(body: dict[str, Any] | None) -> list[tuple[str, str]]:
        if not body or "variables" not in body:
            return []
        variables = body["variables"]
        if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
            raise AriError(400, "Only string values in the 'variables' object allowed")
        return list(variables.items())

    # ----------------------------------------------------------------------------------------------
    # websocket
    # ----------------------------------------------------------------------------------------------
    async def events_ws(self, request: web.Request) -> web.StreamResponse:
        params, _ = await self._params(request)
        names = _multi(params, "app")
        if not names:
            raise AriError(400, "Missing param 'app'")
        ws = web.WebSocketResponse(autoping=True, compress=False, timeout=2.0)
        if not ws.can_prepare(request).ok:
            raise AriError(400, "Expected a websocket upgrade")
        await ws.prepare(request)
        self.sim.ws_log.append((self.sim.clock.now(), request.get(ARI_USER, ""), tuple(names)))
        conn = WsConn(ws, request.transport, names, _bool(params, "subscribeAll"))  # type: ignore[arg-type]
        self.connections.add(conn)
        ts = self.sim.ts.fmt()
        for name in names:
            self.apps.activate(name, conn, ts, self.sim.asterisk_id)
        self.sim._waiters.check()
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            conn.closed = True
            self.apps.deactivate(conn)
            self.connections.discard(conn)
            self.sim._waiters.check()
        return ws

    # ----------------------------------------------------------------------------------------------
    # asterisk
    # ----------------------------------------------------------------------------------------------
    async def asterisk_info(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        sim = self.sim
        started = sim.ts.fmt(sim.started_wall)
        info = {
            "build": {
                "os": "Linux",
                "kernel": "6.1.0",
                "options": "",
                "machine": "x86_64",
                "date": "2026-11-01 00:00:00 UTC",
                "user": "root",
            },
            "system": {"version": sim.version, "entity_id": sim.asterisk_id},
            "config": {"name": "", "default_language": "en", "setid": {"user": "", "group": ""}},
            "status": {"startup_time": started, "last_reload_time": started},
        }
        only = _multi(params, "only")
        if only:
            info = {k: v for k, v in info.items() if k in only}
        return _obj(info)

    async def asterisk_ping(self, request: web.Request) -> web.Response:
        return _obj({"asterisk_id": self.sim.asterisk_id, "ping": "pong", "timestamp": self.sim.ts.fmt()})

    async def asterisk_get_var(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        name = _first(params, "variable")
        if not name:
            raise AriError(400, "Variable name is required")
        return _obj({"value": self.engine.globals.get(name, "")})

    async def asterisk_set_var(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        name = _first(params, "variable")
        if not name:
            raise AriError(400, "Variable name is required")
        self.engine.globals[name] = _first(params, "value") or ""
        return _no_content()

    # ----------------------------------------------------------------------------------------------
    # applications
    # ----------------------------------------------------------------------------------------------
    def _app(self, name: str) -> Any:
        app = self.apps.get(name)
        if app is None:
            raise AriError(404, "Application not found")
        return app

    async def applications_list(self, request: web.Request) -> web.Response:
        return _obj([app.to_json() for app in self.apps.apps.values()])

    async def application_get(self, request: web.Request) -> web.Response:
        return _obj(self._app(request.match_info["app"]).to_json())

    async def application_subscribe(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        sources = _multi(params, "eventSource")
        if not sources:
            raise AriError(400, "Missing parameter eventSource")
        app = self._app(request.match_info["app"])
        self.engine.subscribe(app, sources)
        return _obj(app.to_json())

    async def application_unsubscribe(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        sources = _multi(params, "eventSource")
        if not sources:
            raise AriError(400, "Missing parameter eventSource")
        app = self._app(request.match_info["app"])
        self.engine.unsubscribe(app, sources)
        return _obj(app.to_json())

    async def application_filter(self, request: web.Request) -> web.Response:
        """res/ari/resource_applications.c ast_ari_applications_filter, body read as main/http.c does:
        no ``application/json`` content type or no content = no body (resets both lists); a body that
        is not a JSON object or array = 400 before the handler (jansson without JSON_DECODE_ANY)."""
        body: Any = None
        if request.content_type.lower() == "application/json" and request.body_exists:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise AriError(400, "Error parsing request body") from None
                if not isinstance(body, dict | list):
                    raise AriError(400, "Error parsing request body")
        app = self._app(request.match_info["app"])
        if not app.set_event_filter(body):
            raise AriError(400, "Invalid format definition")
        return _obj(app.to_json())

    # ----------------------------------------------------------------------------------------------
    # endpoints
    # ----------------------------------------------------------------------------------------------
    async def endpoints_list(self, request: web.Request) -> web.Response:
        return _json("[" + ", ".join(ep.snap() for ep in self.engine.endpoints.values()) + "]")

    async def endpoints_by_tech(self, request: web.Request) -> web.Response:
        tech = request.match_info["tech"]
        eps = [ep for ep in self.engine.endpoints.values() if ep.tech == tech]
        if not eps:
            raise AriError(404, "Endpoints not found")
        return _json("[" + ", ".join(ep.snap() for ep in eps) + "]")

    async def endpoint_get(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['tech']}/{request.match_info['resource']}"
        ep = self.engine.endpoints.get(key)
        if ep is None:
            raise AriError(404, "Endpoint not found")
        return _json(ep.snap())

    # ----------------------------------------------------------------------------------------------
    # channels
    # ----------------------------------------------------------------------------------------------
    async def channels_list(self, request: web.Request) -> web.Response:
        # newest first, as Asterisk lists them (local_channel_optimization.json)
        return _json("[" + ", ".join(ch.snap() for ch in reversed(self.engine.channels.values())) + "]")

    async def channels_create(self, request: web.Request) -> web.Response:
        params, body = await self._params(request)
        endpoint = _require(params, "endpoint")
        app = _require(params, "app")
        text = self.engine.create(
            endpoint=endpoint,
            app=app,
            app_args=_first(params, "appArgs"),
            channel_id=_first(params, "channelId"),
            originator=_first(params, "originator"),
            formats=_first(params, "formats"),
            variables=self._variables(body),
        )
        return _json(text)

    async def channels_originate(self, request: web.Request) -> web.Response:
        params, body = await self._params(request)
        channel_id = request.match_info.get("id") or _first(params, "channelId")
        priority = _first(params, "priority")
        text = self.engine.originate(
            endpoint=_first(params, "endpoint") or "",
            app=_first(params, "app"),
            app_args=_first(params, "appArgs"),
            extension=_first(params, "extension"),
            context=_first(params, "context"),
            priority=int(priority) if priority and priority.isdigit() else None,
            label=_first(params, "label"),
            caller_id=_first(params, "callerId"),
            timeout=_int(params, "timeout", 30),
            channel_id=channel_id,
            originator=_first(params, "originator"),
            formats=_first(params, "formats"),
            variables=self._variables(body),
        )
        return _json(text)

    async def channel_get(self, request: web.Request) -> web.Response:
        return _json(self.engine.get_channel(request.match_info["id"]).snap())

    async def channel_hangup(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        self.engine.hangup(request.match_info["id"], _first(params, "reason"), _first(params, "reason_code"))
        return _no_content()

    async def channel_continue(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        ch = self.engine.control(request.match_info["id"], check_state=True)
        priority = _int(params, "priority", 0) or None
        self.engine.continue_in_dialplan(
            ch, _first(params, "context"), _first(params, "extension"), priority, _first(params, "label")
        )
        return _no_content()

    async def _state_op(self, request: web.Request) -> Any:
        await self._params(request)
        return self.engine.control(request.match_info["id"], check_state=True)

    async def channel_answer(self, request: web.Request) -> web.Response:
        self.engine.answer(await self._state_op(request))
        return _no_content()

    async def channel_ring(self, request: web.Request) -> web.Response:
        self.engine.ring(await self._state_op(request), True)
        return _no_content()

    async def channel_ring_stop(self, request: web.Request) -> web.Response:
        self.engine.ring(await self._state_op(request), False)
        return _no_content()

    async def channel_progress(self, request: web.Request) -> web.Response:
        await self._state_op(request)
        return _no_content()

    async def channel_dtmf(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        ch = self.engine.control(request.match_info["id"], check_state=True)
        dtmf = _first(params, "dtmf")
        if not dtmf:
            raise AriError(400, "DTMF is required")
        self.engine.send_dtmf(ch, dtmf)
        return _no_content()

    async def _mute(self, request: web.Request, on: bool) -> web.Response:
        params, _ = await self._params(request)
        ch = self.engine.control(request.match_info["id"], check_state=True)
        direction = _first(params, "direction") or "both"
        if direction not in ("both", "in", "out"):
            raise AriError(400, "Invalid direction specified")
        ch.muted = direction if on else ""
        return _no_content()

    async def channel_mute(self, request: web.Request) -> web.Response:
        return await self._mute(request, True)

    async def channel_unmute(self, request: web.Request) -> web.Response:
        return await self._mute(request, False)

    async def channel_hold(self, request: web.Request) -> web.Response:
        (await self._state_op(request)).held = True
        return _no_content()

    async def channel_unhold(self, request: web.Request) -> web.Response:
        (await self._state_op(request)).held = False
        return _no_content()

    async def channel_moh(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        ch = self.engine.control(request.match_info["id"], check_state=True)
        self.engine.channel_moh(ch, _first(params, "mohClass") or "default")
        return _no_content()

    async def channel_moh_stop(self, request: web.Request) -> web.Response:
        self.engine.channel_moh(await self._state_op(request), None)
        return _no_content()

    async def channel_silence(self, request: web.Request) -> web.Response:
        await self._state_op(request)
        return _no_content()

    async def channel_play(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        ch = self.engine.control(request.match_info["id"], check_state=True)
        medias = _multi(params, "media")
        if not medias:
            raise AriError(400, "Missing required parameter: media")
        if _int(params, "skipms", 3000) < 0:
            raise AriError(400, "skipms cannot be negative")
        if _int(params, "offsetms", 0) < 0:
            raise AriError(400, "offsetms cannot be negative")
        pid = request.match_info.get("playback") or _first(params, "playbackId")
        text = self.engine.play(channel=ch, medias=medias, lang=_first(params, "lang"), playback_id=pid)
        return web.Response(
            text=text,
            status=201,
            content_type=_JSON,
            headers={"Location": f"/playbacks/{json.loads(text)['id']}"},
        )

    async def channel_get_var(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        name = _first(params, "variable")
        if not name:
            raise AriError(400, "Variable name is required")
        ch = self.engine.channels.get(request.match_info["id"])
        if ch is None:
            raise AriError(404, "Provided channel was not found")
        return _json(f'{{"value": {jstr(self.engine.get_var(ch, name))}}}')

    async def channel_set_var(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        name = _first(params, "variable")
        if not name:
            raise AriError(400, "Variable name is required")
        ch = self.engine.control(request.match_info["id"])
        self.engine.set_var(ch, name, _first(params, "value") or "")
        return _no_content()

    async def channel_dial(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        ch = self.engine.control(request.match_info["id"])
        self.engine.dial(ch, _first(params, "caller"), _int(params, "timeout", 0))
        return _no_content()

    # ----------------------------------------------------------------------------------------------
    # bridges
    # ----------------------------------------------------------------------------------------------
    async def bridges_list(self, request: web.Request) -> web.Response:
        return _json("[" + ", ".join(b.snap() for b in self.engine.bridges.values()) + "]")

    async def bridges_create(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        bridge_id = request.match_info.get("id") or _first(params, "bridgeId")
        bridge = self.engine.create_bridge(_first(params, "type"), bridge_id, _first(params, "name"))
        return _json(bridge.snap())

    async def bridge_get(self, request: web.Request) -> web.Response:
        return _json(self.engine.get_bridge(request.match_info["id"]).snap())

    async def bridge_destroy(self, request: web.Request) -> web.Response:
        self.engine.destroy_bridge(self.engine.get_bridge(request.match_info["id"]))
        return _no_content()

    async def bridge_add(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        bridge = self.engine.get_bridge(request.match_info["id"])
        held = self.engine.add_channels(
            bridge, _multi(params, "channel"), _bool(params, "inhibitConnectedLineUpdates")
        )
        if held is not None:
            await held  # a channel of the request is still playing something
        return _no_content()

    async def bridge_remove(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        bridge = self.engine.get_bridge(request.match_info["id"])
        self.engine.remove_channels(bridge, _multi(params, "channel"))
        return _no_content()

    async def bridge_moh(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        bridge = self.engine.get_bridge(request.match_info["id"])
        self.engine.bridge_moh(bridge, _first(params, "mohClass"))
        return _no_content()

    async def bridge_moh_stop(self, request: web.Request) -> web.Response:
        self.engine.bridge_moh_stop(self.engine.get_bridge(request.match_info["id"]))
        return _no_content()

    async def bridge_play(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        bridge = self.engine.get_bridge(request.match_info["id"])
        medias = _multi(params, "media")
        if not medias:
            raise AriError(400, "Missing required parameter: media")
        pid = request.match_info.get("playback") or _first(params, "playbackId")
        text = self.engine.play(bridge=bridge, medias=medias, lang=_first(params, "lang"), playback_id=pid)
        return web.Response(text=text, status=201, content_type=_JSON)

    # ----------------------------------------------------------------------------------------------
    # playbacks
    # ----------------------------------------------------------------------------------------------
    def _playback(self, pid: str) -> Any:
        pb = self.engine.playbacks.get(pid)
        if pb is None:
            raise AriError(404, "Playback not found")
        return pb

    async def playback_get(self, request: web.Request) -> web.Response:
        return _json(self._playback(request.match_info["id"]).snap())

    async def playback_stop(self, request: web.Request) -> web.Response:
        self.engine.stop_playback(self._playback(request.match_info["id"]))
        return _no_content()

    async def playback_control(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        self._playback(request.match_info["id"])
        operation = _first(params, "operation")
        if operation not in ("restart", "pause", "unpause", "reverse", "forward"):
            raise AriError(400, "Invalid operation parameter")
        return _no_content()


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)
