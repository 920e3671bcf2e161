"""The person at the browser in ``acdctl demo``: their agent, their simulated softphone, a fake CRM.

The demo adds one agent, ``you``, that no script drives: it starts logged out; whoever opens the
panel with its token logs in and then takes (answers the simulated softphone from the panel, or
clicks Accept in the desktop-mode ``vip`` queue), rejects or misses real offers. Callers carry
SIP headers (``X-Customer-Id``, ``X-Ticket``) that the controller reads into the offer card, and
a fake CRM on the demo's own HTTP port answers the card's lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from controller.acd.setup import (
    Acceptance,
    AcdSetup,
    AgentConfig,
    AgentStartState,
    DialplanTarget,
    HoldMode,
    Membership,
    QueueConfig,
    Strategy,
)
from controller.api.errors import ApiError

if TYPE_CHECKING:
    from controller.app import Controller
    from controller.sim.phones import Phone

__all__ = ["PANEL_AGENT", "INFO_HEADERS", "add_panel_agent", "caller_headers", "demo_routes"]

PANEL_AGENT = "you"
PANEL_ENDPOINT = "PJSIP/panel1"
INFO_HEADERS = ("X-Customer-Id", "X-Ticket")
PLANS = ("Fibra 500 Mega", "Fibra 1 Giga", "Móvel Controle", "Empresarial 300")


def add_panel_agent(setup: AcdSetup) -> AcdSetup:
    """``setup`` plus the ``vip`` queue (desktop acceptance) and the browser's agent in every queue."""
    vip = QueueConfig(
        "vip",
        strategy=Strategy.LONGEST_IDLE,
        ring_timeout=20,
        acceptance=Acceptance.DESKTOP,
        hold=HoldMode.MOH,
        wrapup=10,
        max_wait=90,
        join_empty=False,  # nobody at the panel: straight to the dialplan fallback
        max_no_answer=3,
        overflow=DialplanTarget("acd-overflow", "s", 1),
    )
    queues = dict(setup.queues) | {"vip": vip}
    member_of = tuple(Membership(q) for q in queues)
    you = AgentConfig(PANEL_AGENT, "You (panel)", PANEL_ENDPOINT, member_of, AgentStartState.LOGGED_OUT)
    return replace(setup, queues=queues, agents=dict(setup.agents) | {PANEL_AGENT: you})


def caller_headers(rng: random.Random, index: int) -> dict[str, str]:
    """The SIP headers a caller's INVITE carries (an IVR would set them in a real system)."""
    headers = {"X-Customer-Id": f"C{rng.randint(10000, 99999)}"}
    if rng.random() < 0.5:
        headers["X-Ticket"] = str(rng.randint(1000, 9999))
    return headers


def crm_record(number: str) -> dict[str, Any]:
    """A stable fake customer for a phone number."""
    seed = int(hashlib.sha256(number.encode()).hexdigest()[:8], 16)
    return {
        "customer": f"Cliente {seed % 9000 + 1000}",
        "plan": PLANS[seed % len(PLANS)],
        "customer_since": str(2015 + seed % 10),
        "open_tickets": seed % 3,
        "vip": seed % 5 == 0,
    }


def demo_routes(controller: Controller, phone: Phone, identify: Any) -> Any:
    """An app hook adding ``/demo/phone/{agent}/answer|decline`` and ``/demo/crm``.

    Answering in a confirm-mode queue also presses 1, as the card's hint tells a person to.
    """

    async def phone_action(request: web.Request) -> web.Response:
        agent_id, action = request.match_info["agent_id"], request.match_info["action"]
        principal = identify(request.headers.get("Authorization"))
        if not principal.may_act_for(agent_id):
            raise ApiError(403, "forbidden", "an agent token may only use its own phone")
        if agent_id != PANEL_AGENT:
            raise ApiError(404, "not_found", f"agent {agent_id!r} has no softphone on this page")
        if action not in ("answer", "decline"):
            raise ApiError(404, "not_found", "unknown phone action; one of answer, decline")
        def ringing_now() -> list[Any]:
            return [i for i in phone.active_calls if i.outcome in ("trying", "ringing")]

        ringing = ringing_now()
        offered = controller.engine.agents[agent_id].live_offer is not None
        for _ in range(40):  # the card can show a moment before the INVITE reaches the phone
            if ringing or not offered:
                break
            await asyncio.sleep(0.05)
            ringing = ringing_now()
        if not ringing:
            raise ApiError(409, "conflict", "your phone is not ringing")
        invite = ringing[-1]
        if action == "answer":
            invite.answer()
            agent = controller.engine.agents[agent_id]
            offer = controller.engine.offers.get(agent.live_offer or "")
            call = controller.engine.calls.get(offer.call_id) if offer is not None else None
            queue = controller.engine.setup.queues.get(call.queue) if call is not None else None
            if queue is not None and queue.acceptance is Acceptance.CONFIRM:
                asyncio.get_running_loop().call_later(0.3, invite.send_dtmf, "1")
        else:
            invite.reject(603)
        return web.json_response({"phone": phone.name, "done": action})

    async def crm(request: web.Request) -> web.Response:
        number = request.query.get("number", "")
        if not number:
            return web.json_response({"error": "number is required"}, status=400)
        return web.json_response(crm_record(number))

    def hook(app: web.Application) -> None:
        app.router.add_post("/demo/phone/{agent_id}/{action}", phone_action)
        app.router.add_get("/demo/crm", crm)

    return hook
