"""``acdctl demo``: the real controller on an embedded simulated Asterisk, with a live view.

Everything a phone-system admin would see with real phones happens here over real ARI
(HTTP + WebSocket on loopback): callers are parked with music, agents' phones ring without
auto-answer showing ``[support 0:42] Maria``, some agents answer, some decline (603), some are
busy (486), one never answers (and becomes not responding), one is offline — and every
declined, busy or unanswered offer moves on to the next agent at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import shutil
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import Presence
from controller.acd.setup import (
    Acceptance,
    AcdSetup,
    AgentConfig,
    DialplanTarget,
    HoldMode,
    Membership,
    QueueConfig,
    Strategy,
)
from controller.api.app import identify
from controller.api.auth import hash_token
from controller.app import Controller
from controller.clock import Clock
from controller.demo_panel import INFO_HEADERS, PANEL_AGENT, add_panel_agent, caller_headers, demo_routes
from controller.panel.crm import CrmLookup
from controller.sim import DND, Answer, Busy, Decline, NoAnswer, SimAsterisk, exponential, uniform
from controller.whatsapp.demo import start_demo_sidecar

log = logging.getLogger("controller.demo")

# (name, behaviour description) of the simulated agents, in order; more agents repeat the pattern
PERSONAS = [
    ("Alice", "answers in 2-4 s"),
    ("Bruno", "declines 1 call in 3 (603)"),
    ("Carla", "busy on another line 1 call in 4 (486)"),
    ("Davi", "never answers: becomes not responding"),
    ("Elena", "offline (phone not registered)"),
    ("Felipe", "answers in 1-3 s, do-not-disturb 1 call in 5 (480)"),
]


def demo_setup(agents: int) -> AcdSetup:
    support = QueueConfig(
        "support",
        strategy=Strategy.LONGEST_IDLE,
        ring_timeout=15,
        acceptance=Acceptance.ANSWER,
        hold=HoldMode.MOH,
        wrapup=5,
        max_wait=180,
        overflow=DialplanTarget("acd-overflow", "s", 1),
        busy_delay=10,
        max_no_answer=2,
    )
    sales = QueueConfig(
        "sales",
        strategy=Strategy.RING_ALL,
        ring_timeout=12,
        acceptance=Acceptance.CONFIRM,
        hold=HoldMode.RING,
        wrapup=3,
        max_wait=120,
        max_no_answer=2,
    )
    confs = {}
    for i in range(agents):
        name = PERSONAS[i % len(PERSONAS)][0] + ("" if i < len(PERSONAS) else str(i // len(PERSONAS) + 1))
        agent_id = name.lower()
        queues = (Membership("support"),) if i % 3 else (Membership("support"), Membership("sales"))
        confs[agent_id] = AgentConfig(agent_id, name, f"PJSIP/agent{i + 1}", queues)
    return AcdSetup(queues={"support": support, "sales": sales}, agents=confs)


def phone_behaviour(index: int, rng: random.Random):
    """A per-call behaviour for simulated agent number ``index`` (see PERSONAS)."""
    kind = index % len(PERSONAS)

    def answer(low: float, high: float) -> Answer:
        # pressing 1 after answering accepts in confirm mode and is harmless in answer mode
        return Answer(after=rng.uniform(low, high), dtmf=((1.5, "1"),))

    def pick(invite: Any):
        roll = rng.random()
        if kind == 1 and roll < 1 / 3:
            return Decline(after=rng.uniform(1, 3))
        if kind == 2 and roll < 1 / 4:
            return Busy(after=0.3)
        if kind == 3:
            return NoAnswer()
        if kind == 5 and roll < 1 / 5:
            return DND(after=0.2)
        return answer(1, 3) if kind == 5 else answer(2, 4)

    return pick


_NOTABLE_STATES = ("not_responding", "unreachable", "logged_out", "paused")


@dataclass
class CallRow:
    call_id: str
    caller: str
    queue: str
    arrived: float
    offers: list[tuple[str, str]] = field(default_factory=list)  # (agent, outcome or "ringing")
    taken_by: str | None = None
    outcome: str | None = None
    ended: float | None = None


class DemoView:
    """A readable live picture of calls and agents, built from the controller's own records."""

    def __init__(self, controller: Controller, out: TextIO, live: bool) -> None:
        self.controller = controller
        self.out = out
        self.live = live
        self.calls: dict[str, CallRow] = {}
        self.finished: deque[CallRow] = deque(maxlen=8)
        self.totals: dict[str, int] = {}
        self.offers: dict[str, int] = {}
        self.api = ""  # "HTTP API at ..." line, shown in the live view too
        controller.shell.listeners.append(self.on_command)

    def on_command(self, c: cmd.Notify | cmd.Record) -> None:
        if not isinstance(c, cmd.Record):
            return
        d = c.data
        if c.kind == "call.queued":
            caller = f"{d.get('caller_name') or ''} {d.get('caller_number') or ''}".strip() or d["call"]
            self.calls[d["call"]] = CallRow(d["call"], caller, d["queue"], d["at"])
            self._line(f"call from {caller} queued in {d['queue']}")
        elif c.kind == "offer.created" and d["call"] in self.calls:
            self.calls[d["call"]].offers.append((d["agent"], "ringing"))
            self._line(f"  ringing {d['agent']} for {self.calls[d['call']].caller}")
        elif c.kind == "offer.ended" and d["call"] in self.calls:
            row = self.calls[d["call"]]
            for i in range(len(row.offers) - 1, -1, -1):
                if row.offers[i] == (d["agent"], "ringing"):
                    row.offers[i] = (d["agent"], d["outcome"])
                    break
            self.offers[d["outcome"]] = self.offers.get(d["outcome"], 0) + 1
            if d["outcome"] != "accepted":
                cause = f" (cause {d['cause']}/{d['tech_cause']})" if d["cause"] is not None else ""
                self._line(f"  {d['agent']}: {d['outcome']} {d['detail']}{cause} -> next agent")
        elif c.kind == "call.connected" and d["call"] in self.calls:
            row = self.calls[d["call"]]
            row.taken_by = d["agent"]
            self._line(f"  {d['agent']} accepted {row.caller} after {d['wait']:.0f} s: bridged")
        elif c.kind == "call.ended" and d["call"] in self.calls:
            row = self.calls.pop(d["call"])
            row.outcome, row.ended = d["outcome"], d["at"]
            self.finished.append(row)
            self.totals[row.outcome] = self.totals.get(row.outcome, 0) + 1
            self._line(f"call from {row.caller} {row.outcome} ({d['detail'] or d['hung_up_by'] or ''})")
        elif c.kind == "agent.state" and d["state"] in _NOTABLE_STATES:
            self._line(f"agent {d['agent']} is {d['state']}: {d['reason']}")

    def _line(self, text: str) -> None:
        if not self.live:
            now = self.controller.clock.now()
            print(f"[{now:7.1f}s] {text}", file=self.out, flush=True)

    def render(self) -> str:
        engine = self.controller.engine
        now = self.controller.clock.now()
        width = shutil.get_terminal_size((100, 30)).columns
        lines = [
            f"ACD demo: simulated Asterisk + real controller over ARI   t={now:6.0f} s (simulated)"
            "   Ctrl-C to stop",
            *([self.api] if self.api else []),
            "",
            "CALLS            queue    wait  offers (agent: outcome)                         taken by",
        ]

        def row_line(row: CallRow, live: bool) -> str:
            wait = (now if live else row.ended or now) - row.arrived
            offers = ", ".join(f"{a}: {o}" for a, o in row.offers) or "waiting for a free agent"
            end = row.taken_by or ("" if live else row.outcome or "")
            if not live and row.taken_by:
                end = f"{row.taken_by} ({row.outcome})"
            return f"{row.caller[:16]:16} {row.queue:8} {wait:4.0f}s  {offers[:48]:48} {end}"

        for row in sorted(self.calls.values(), key=lambda r: r.arrived)[:12]:
            lines.append(row_line(row, True))
        if not self.calls:
            lines.append("  (no call in progress)")
        lines += ["", "RECENTLY FINISHED"]
        lines += [row_line(row, False) for row in self.finished] or ["  (none yet)"]
        lines += ["", "AGENTS           state            queues            calls  misses"]
        for agent in engine.agents.values():
            state = agent.status
            if agent.presence is Presence.PAUSED and agent.pause_reason:
                state += f" ({agent.pause_reason})"
            queues = ",".join(agent.penalties)
            lines.append(f"{agent.name:16} {state:16} {queues:17} {agent.calls_taken:5}  {agent.misses:6}")
        totals = ", ".join(f"{k} {v}" for k, v in sorted(self.totals.items())) or "none yet"
        offers = ", ".join(f"{k} {v}" for k, v in sorted(self.offers.items())) or "none yet"
        lines += ["", f"calls finished: {totals}", f"offers: {offers}"]
        return "\n".join(line[:width] for line in lines)

    def draw(self) -> None:
        if self.live:
            self.out.write("\x1b[H\x1b[2J" + self.render() + "\n")
            self.out.flush()


async def demo(
    *,
    duration: float = 30.0,
    speed: float = 10.0,
    seed: int = 1,
    agents: int = 4,
    rate: float | None = None,
    out: TextIO | None = None,
    live: bool | None = None,
    http_port: int | None = 0,
    admin_token: str = "",
    panel_token: str = "",
    whatsapp: bool = True,
    ready: Callable[[dict[str, str]], None] | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """Run the demo; returns the finished-call totals (also used by the demo's test).

    The HTTP API and the agent panel run on ``http_port`` (0 = any free port, None = neither)
    with a throwaway SQLite history database, so the demo never writes into the real
    ``ACD_DATABASE_URL``; with ``whatsapp`` the WhatsApp sidecar runs beside it with simulated
    Meta traffic. ``ready`` gets the URLs and tokens once everything listens (tests use it).
    """
    out = out or sys.stdout
    live = out.isatty() if live is None else live
    clock = Clock(speed=speed)
    rng = random.Random(seed)
    setup = demo_setup(agents)
    if http_port is not None:
        setup = add_panel_agent(setup)
    sim = SimAsterisk(clock=clock, seed=seed, user="acd", password="demo-secret")
    sim.dialplan["101"] = ("acd", ["support"])
    sim.dialplan["102"] = ("acd", ["sales"])
    sim.dialplan["103"] = ("acd", ["vip"])
    await sim.start("127.0.0.1", 0)
    panel_phone = None
    for i, conf in enumerate(setup.agents.values()):
        name = conf.endpoint.split("/", 1)[1]
        if conf.id == PANEL_AGENT:
            # a softphone that rings until the person answers or declines it from the page, and
            # answers by itself when the controller calls it with auto-answer (desktop mode)
            panel_phone = sim.add_phone(name, NoAnswer(), honor_auto_answer=True, display_name="You")
            continue
        offline = i % len(PERSONAS) == 4
        sim.add_phone(name, phone_behaviour(i, rng), registered=not offline)
    controller = Controller(
        setup,
        ari_url=sim.base_url,
        ari_user="acd",
        ari_password="demo-secret",
        clock=clock,
        seed=seed,
        info_headers=INFO_HEADERS,
    )
    view = DemoView(controller, out, live)
    services, data_dir, sidecar = None, None, None
    urls: dict[str, str] = {}
    if http_port is not None:
        panel_token = panel_token or secrets.token_urlsafe(16)
        services, data_dir, api_url, admin_token = await _start_api(
            controller, http_port, admin_token, {PANEL_AGENT: hash_token(panel_token)}, panel_phone
        )
        urls = {"api": api_url, "admin_token": admin_token, "panel_token": panel_token}
        urls["panel"] = f"{api_url}/#token={panel_token}"
        urls["wallboard"] = f"{api_url}/wallboard#token={admin_token}"  # the admin sees every queue
        if whatsapp:
            sidecar = await start_demo_sidecar(
                admin_token=admin_token,
                agent_tokens={PANEL_AGENT: panel_token},
                cors_origins=[api_url],
                panel_agents=[PANEL_AGENT],
                seed=seed,
            )
            services.panel_config.whatsapp_url = sidecar.url
            urls["whatsapp"] = sidecar.url
        view.api = (
            f"Agent panel (you): {urls['panel']}\n"
            f"Supervisor wallboard: {urls['wallboard']}\n"
            f"HTTP API: curl -H 'Authorization: Bearer {admin_token}' {api_url}/api/queues"
        )
        if not live:
            print(view.api, file=out, flush=True)
            if speed > 2:
                print(
                    f"  (time runs x{speed:g}: a 20 s offer lasts {20 / speed:.1f} s on your screen;"
                    " `acdctl demo --panel` runs in real time until Ctrl-C)",
                    file=out,
                    flush=True,
                )
    if not live:
        print(
            f"ACD demo: {len(setup.agents)} agents, simulated time x{speed:g};"
            f" ARI of the simulated Asterisk at {sim.base_url}",
            file=out,
        )
        for i, conf in enumerate(setup.agents.values()):
            persona = PERSONAS[i % len(PERSONAS)][1]
            if conf.id == PANEL_AGENT:
                persona = "you, in the agent panel: starts logged out; also the only agent of vip (desktop)"
            queues = ", ".join(m.queue for m in conf.queues)
            print(f"  agent {conf.name} ({conf.endpoint}, {queues}): {persona}", file=out)
    await controller.start()
    traffic = sim.traffic(
        rate=rate or max(0.05, 0.04 * len(setup.agents)),
        seed=seed,
        extens={"101": 3, "102": 1, "103": 1} if http_port is not None else {"101": 3, "102": 1},
        patience=uniform(40, 200),
        talk_time=exponential(25),
        headers=caller_headers,
    )
    traffic.start()
    if ready is not None:
        ready(urls)
    # a supervisor who puts not-responding agents back to ready after a while, as a person would
    ready_after: dict[str, float] = {}
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    started = loop.time()
    try:
        while not stop.is_set() and (duration <= 0 or loop.time() - started < duration):
            view.draw()
            now = clock.now()
            for agent in controller.engine.agents.values():
                if agent.presence is Presence.NOT_RESPONDING and agent.id != PANEL_AGENT:
                    at = ready_after.setdefault(agent.id, now + 60)
                    if now >= at:
                        ready_after.pop(agent.id)
                        controller.shell.feed(ev.AgentReady(agent.id))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await stop.wait()
    finally:
        traffic.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        view.draw()
        await controller.stop()
        await sim.stop()
        if sidecar is not None:
            print(f"WhatsApp: {sidecar.summary()}", file=out)
            await sidecar.stop()
        if services is not None:
            await services.close()
        if data_dir is not None:
            data_dir.cleanup()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(view.totals.items())) or "no call finished"
    offers = ", ".join(f"{k} {v}" for k, v in sorted(view.offers.items())) or "no offer"
    print(f"\ndemo finished: calls {summary}; offers {offers}", file=out)
    return dict(view.totals)


async def _start_api(
    controller: Controller, port: int, admin_token: str, agent_tokens: dict[str, str], phone: Any
) -> tuple[Any, Any, str, str]:
    """History in a temporary SQLite file + the HTTP API and panel; falls back to any free port if
    ``port`` is taken. The fake CRM is served by the same app."""
    import tempfile

    from controller.config import ConfigError, load_settings
    from controller.service import Services

    data_dir = tempfile.TemporaryDirectory(prefix="acd-demo-")
    admin_token = admin_token or secrets.token_urlsafe(12)
    settings = load_settings(
        env_file=None,
        database_url=f"sqlite+aiosqlite:///{data_dir.name}/demo.sqlite3",
        admin_token=admin_token,
        http_host="127.0.0.1",
        http_port=port or 8080,
    )
    services = Services(controller, settings, agent_tokens=agent_tokens, demo=True)
    services.app_hooks.append(demo_routes(controller, phone, lambda h: identify(services.api_auth, h)))
    await services.attach()
    try:
        url = await services.serve(port=port)
    except ConfigError:
        url = await services.serve(port=0)
    assert services.panel is not None
    services.panel.set_crm(CrmLookup(url + "/demo/crm?number={caller_number}", timeout=2.0))
    return services, data_dir, url, admin_token


def run_demo(args: Any) -> Any:
    return _main(args)


async def _main(args: Any) -> int:
    if str(getattr(args, "log_level", None) or "INFO").upper() == "INFO":
        # the view narrates every decision; the structured log lines stay available with --log-level debug
        logging.getLogger("controller").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # the demo's throwaway database
    from controller.config import load_settings

    settings = load_settings()
    panel = bool(getattr(args, "panel", False))
    await demo(
        duration=0 if panel else args.duration,
        speed=1.0 if panel else args.speed,
        seed=args.seed,
        agents=args.agents,
        http_port=settings.http_port,
        admin_token=settings.admin_token.get_secret_value(),
    )
    return 0
