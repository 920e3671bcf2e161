"""``acdctl harness check``: real SIP calls through Asterisk + controller, a pass/fail table.

The runner (:func:`run_scenarios`) is generic: a scenario is an async function that raises
:class:`Failed` (or :class:`Skipped`) and returns the times it measured. After every scenario
the runner ends what the scenario left ringing; at the end it asks ARI for channels, since a
check that leaves channels in the admin's Asterisk is a failed check.

The built-in scenarios (:data:`SCENARIOS`) drive the phones by hand (every agent rings without
answering; the scenario answers, refuses or lets ring), so who gets an offer never depends on
timing luck.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controller.acd.setup import INVITE_HEADERS, Acceptance, AcdSetup, QueueConfig
from controller.harness.ua import Behaviour, Event, HarnessError, UaGroup, local_address_towards

CONFIRM_PRESS_AFTER = 0.5  # a person presses 1/2 a moment after picking up; a digit 2 ms
# after the 200 OK can arrive before Asterisk listens for it
BUSY_STATES = ("talking", "ringing", "wrapup", "delayed")  # the API's agent states still to wait out


class Failed(AssertionError):
    """The deployment did not do what the scenario expects (its text goes in the table)."""


class Skipped(Exception):  # noqa: N818 - reads as an outcome in the table
    """The scenario does not apply to this queue file (e.g. no confirm-mode queue)."""


@dataclass(slots=True)
class Result:
    name: str
    outcome: str  # "PASS" | "FAIL" | "SKIP"
    detail: str = ""
    measured: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


Scenario = tuple[str, Callable[[Any], Awaitable[dict[str, float] | None]]]


async def run_scenarios(
    scenarios: Sequence[Scenario],
    ctx: Any,
    *,
    cleanup: Callable[[], Awaitable[None]] | None = None,
    leftovers: Callable[[], Awaitable[list[str]]] | None = None,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """Run each scenario (bounded by ``timeout``), clean up after it, then check for leftovers."""
    results: list[Result] = []
    for name, fn in scenarios:
        if progress:
            progress(name)
        started = time.monotonic()
        try:
            measured = await asyncio.wait_for(fn(ctx), timeout)
            result = Result(name, "PASS", measured=dict(measured or {}))
        except Skipped as exc:
            result = Result(name, "SKIP", str(exc))
        except Failed as exc:
            result = Result(name, "FAIL", str(exc))
        except TimeoutError:
            result = Result(name, "FAIL", f"did not finish within {timeout:g} s")
        except HarnessError as exc:
            result = Result(name, "FAIL", str(exc).splitlines()[0])
        except Exception as exc:  # a bug in a scenario must not hide the others' results
            result = Result(name, "FAIL", f"{type(exc).__name__}: {exc}")
        if cleanup:
            try:
                await cleanup()
            except Exception as exc:
                if result.outcome == "PASS":
                    result = Result(name, "FAIL", f"cleanup: {exc}", result.measured)
        result.seconds = time.monotonic() - started
        results.append(result)
    if leftovers:
        name = "nothing left behind in Asterisk"
        try:
            left = await leftovers()
            results.append(
                Result(name, "FAIL", f"{len(left)} channel(s) left: {', '.join(left[:5])}")
                if left
                else Result(name, "PASS", "no channel left (ARI)")
            )
        except Exception as exc:
            results.append(Result(name, "FAIL", f"could not list channels over ARI: {exc}"))
    return results


def exit_code(results: Sequence[Result]) -> int:
    return 1 if any(r.outcome == "FAIL" for r in results) else 0


def fmt_seconds(v: float) -> str:
    if v < 0.01:
        return f"{v * 1000:.1f} ms"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s"


def format_results(results: Sequence[Result]) -> str:
    """The table an admin reads: outcome, scenario, measured times, why it failed."""
    rows = [("RESULT", "SCENARIO", "MEASURED", "DETAIL")]
    for r in results:
        measured = ", ".join(f"{k} {fmt_seconds(v)}" for k, v in r.measured.items())
        rows.append((r.outcome, r.name, measured or "-", r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    ]
    passed = sum(r.outcome == "PASS" for r in results)
    failed = sum(r.outcome == "FAIL" for r in results)
    skipped = sum(r.outcome == "SKIP" for r in results)
    lines.append(f"\n{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(line.rstrip() for line in lines)


# --------------------------------------------------------------------------- the deployment


@dataclass(slots=True)
class Deployment:
    """Where the PBX, ARI and the controller's API are, and who the harness logs in as."""

    setup: AcdSetup
    extensions: dict[str, str]  # queue -> extension the caller dials
    pbx: str = "127.0.0.1:5060"
    ari_url: str = "http://127.0.0.1:8088"
    ari_user: str = "acd"
    ari_password: str = ""
    api_url: str = "http://127.0.0.1:8080"
    api_token: str = ""
    caller_user: str = "harness"
    caller_password: str = ""
    agent_password: str = "{user}"  # template: {user} = the endpoint's name (agent1)
    queue: str = ""
    events_path: str = ""  # write every SIP event of the run here (JSON lines), for a closer look

    def user_of(self, agent_id: str) -> str:
        return self.setup.agents[agent_id].endpoint.split("/", 1)[1]

    async def channels(self) -> list[str]:
        async with httpx.AsyncClient(auth=(self.ari_user, self.ari_password), timeout=5) as http:
            resp = await http.get(f"{self.ari_url.rstrip('/')}/ari/channels")
            resp.raise_for_status()
            return [c["name"] for c in resp.json()]


def left_behind(before: set[str], now: Sequence[str], ours: tuple[str, ...]) -> list[str]:
    """Channels the check created and left: new since the start, and either on one of the
    harness's endpoints or not a phone at all (music-on-hold announcers, Local channels)."""
    return [n for n in now if n not in before and (n.startswith(ours) or not n.startswith("PJSIP/"))]


class Checker:
    """What the scenarios share: the deployment, the agents' phones, the caller."""

    def __init__(self, dep: Deployment, agents: UaGroup, callers: UaGroup) -> None:
        self.dep = dep
        self.agents = agents
        self.callers = callers
        self.numbers = itertools.count(int(time.time()) % 100000 * 100)
        self.queue = self.pick_queue(dep.queue)
        self.first_agent: str | None = None  # who a linear queue offers first (learned)
        self.last_answer_end: tuple[str, float] | None = None

    def pick_queue(self, name: str) -> QueueConfig:
        setup = self.dep.setup
        if name:
            return setup.queues[name]
        for q in setup.queues.values():
            if q.name in self.dep.extensions and len(self.members(q.name)) >= 2:
                return q
        raise HarnessError("no queue with an extension (--exten QUEUE=EXT) and at least 2 agents")

    def members(self, queue: str) -> list[str]:
        return [a.id for a in self.dep.setup.agents.values() if any(m.queue == queue for m in a.queues)]

    def exten_uri(self, queue: str | None = None) -> str:
        q = queue or self.queue.name
        if q not in self.dep.extensions:
            raise Skipped(f"no extension for queue {q} (--exten {q}=EXT)")
        return f"sip:{self.dep.extensions[q]}@{self.dep.pbx}"

    async def start(self) -> None:
        for agent_id in self.dep.setup.agents:
            user = self.dep.user_of(agent_id)
            await self.agents.add_agent(
                agent_id,
                Behaviour("noanswer", auto_answer=True),
                user=user,
                password=self.dep.agent_password.format(user=user),
                registrar=self.dep.pbx,
            )
        await self.callers.add_caller(
            "caller", user=self.dep.caller_user, password=self.dep.caller_password, host=self.dep.pbx
        )

    # --- helpers for scenarios
    def place(self, queue: str | None = None, **kw: Any) -> tuple[str, str]:
        """Call the queue's extension with a fresh caller number (it identifies the call at the agents)."""
        number = str(next(self.numbers))
        headers = {"P-Asserted-Identity": f'"Harness {number}" <sip:{number}@{self.dep.pbx}>'}
        call = self.callers.call("caller", self.exten_uri(queue), headers=headers, **kw)
        return call, number

    async def offer(
        self,
        number: str,
        start: int,
        exclude: Sequence[str] = (),
        timeout: float = 20,
        not_queue: str | None = None,
    ) -> Event:
        """The next INVITE at an agent phone for the caller ``number`` (``not_queue``: one whose
        ``X-Acd-Queue`` names another queue, e.g. after an overflow)."""
        return await self.agents.wait(
            lambda e: e["ev"] == "incoming"
            and e["number"] == number
            and e["ua"] not in exclude
            and (not_queue is None or offer_queue(e) not in (None, not_queue)),
            timeout,
            what=f"offer for caller {number}",
            start=start,
        )

    async def invite_time(self, call: str) -> float:
        ev = await self.callers.wait(
            lambda e: e["ev"] == "invite_sent" and e["call"] == call, what="INVITE sent"
        )
        return ev["t"]

    async def cleanup(self) -> None:
        """End every call, then wait until the agents are free again (wrap-up, pauses), so the
        next scenario starts from idle agents and measures the controller, not a wrap-up."""
        await self.callers.sync()
        await self.agents.sync()
        for call in self.callers.live_calls():
            self.callers.hangup(call)
        await self.callers.settle(timeout=10)
        await self.agents.settle(timeout=10)
        left = self.callers.live_calls() | self.agents.live_calls()
        if left:
            raise Failed(f"calls still up: {sorted(left)}")
        await self.agents_idle()

    async def agents_idle(self) -> None:
        """Every agent available in the controller's API (or, without a token, the longest pause)."""
        q = self.queue
        if not self.dep.api_token:
            await asyncio.sleep(max(q.wrapup, q.reject_delay, q.busy_delay, q.no_answer_delay) + 0.5)
            return
        headers = {"Authorization": f"Bearer {self.dep.api_token}"}
        async with httpx.AsyncClient(base_url=self.dep.api_url, headers=headers, timeout=5) as http:
            for _ in range(300):
                resp = await http.get("/api/agents")
                resp.raise_for_status()
                busy = [a["id"] for a in resp.json()["agents"] if a["state"] in BUSY_STATES]
                if not busy:
                    return
                await asyncio.sleep(0.1)
        raise Failed(f"agents not available again within 30 s: {busy}")


# --------------------------------------------------------------------------- scenarios


def _expect(cond: bool, text: str) -> None:
    if not cond:
        raise Failed(text)


async def accept(c: Checker) -> dict[str, float]:
    """The first agent answers: the caller is connected to them and the call details were shown."""
    mark = c.agents.mark()
    call, number = c.place()
    offer = await c.offer(number, mark, timeout=c.queue.ring_timeout + 10)
    c.first_agent = offer["ua"]
    _expect(
        number in (offer["number"], offer.get("pai") or "", offer.get("from_") or ""),
        f"INVITE lacks {number}",
    )
    c.agents.respond(offer["call"], 200)
    if c.queue.acceptance is Acceptance.CONFIRM:
        await c.agents.wait(
            lambda e: e["ev"] == "state" and e["call"] == offer["call"] and e["state"] == "CONFIRMED"
        )
        await asyncio.sleep(CONFIRM_PRESS_AFTER)
        c.agents.dtmf(offer["call"], "1")
    answered = await c.callers.answered(call)
    _expect(
        answered["state"] == "CONFIRMED",
        f"caller not connected: {answered.get('code')} {answered.get('reason')}",
    )
    sent = c.agents.record(offer["call"]).first("sent", code=200)
    # wait until the agent's leg is up, then the caller hangs up: the agent's phone must stop
    await c.agents.wait(
        lambda e: e["ev"] == "state" and e["call"] == offer["call"] and e["state"] == "CONFIRMED"
    )
    c.callers.hangup(call)
    end = await c.agents.ended(offer["call"])
    c.last_answer_end = (offer["ua"], end["t"])
    measured = {"INVITE->agent INVITE": offer["t"] - await c.invite_time(call)}
    if sent and answered["t"] >= sent["t"]:
        measured["agent 200->caller 200"] = answered["t"] - sent["t"]
    return measured


def offer_queue(event: Event) -> str | None:
    """The ``X-Acd-Queue`` an INVITE carried (header names are case-insensitive)."""
    for name, value in (event.get("x_acd") or {}).items():
        if name.lower() == "x-acd-queue":
            return value
    return None


async def call_details(c: Checker) -> dict[str, float]:
    """The agent's INVITE shows the caller, carries X-Acd-* and (answer/confirm) no auto-answer header."""
    mark = c.agents.mark()
    call, number = c.place()
    offer = await c.offer(number, mark, timeout=c.queue.ring_timeout + 10)
    _expect(offer["number"] == number, f"agent sees number {offer['number']!r}, caller is {number}")
    _expect(bool(offer["display_name"]), "agent's INVITE has no display name")
    got = {name.lower(): value for name, value in (offer.get("x_acd") or {}).items()}
    want = {INVITE_HEADERS[k].lower() for k in c.queue.invite_headers}
    _expect(set(got) == want, f"X-Acd headers {sorted(got)}; the queue's invite_headers: {sorted(want)}")
    for header, value in (("x-acd-queue", c.queue.name), ("x-acd-caller", number)):
        if header in want:
            _expect(got[header] == value, f"{header} is {got[header]!r}, expected {value!r}")
    if c.queue.acceptance is not Acceptance.DESKTOP:
        _expect(not offer["auto_answer"], f"auto-answer header on an offer: {offer['auto_answer']}")
    c.callers.hangup(call)
    await c.agents.ended(offer["call"])
    return {}


async def _refuse_then_next(c: Checker, code: int) -> dict[str, float]:
    mark = c.agents.mark()
    call, number = c.place()
    first = await c.offer(number, mark, timeout=c.queue.ring_timeout + 10)
    c.agents.respond(first["call"], code)
    sent = await c.agents.wait(
        lambda e: e["ev"] == "sent" and e["call"] == first["call"] and e["code"] == code
    )
    nxt = await c.offer(number, mark, exclude=[first["ua"]], timeout=c.queue.ring_timeout + 10)
    c.callers.hangup(call)
    return {f"{code}->next INVITE": nxt["t"] - sent["t"]}


async def reject_next(c: Checker) -> dict[str, float]:
    """An agent declines (603): the next agent rings."""
    return await _refuse_then_next(c, 603)


async def busy_next(c: Checker) -> dict[str, float]:
    """An agent's phone is busy (486): the next agent rings."""
    return await _refuse_then_next(c, 486)


async def no_answer_next(c: Checker) -> dict[str, float]:
    """Nobody picks up: after ring_timeout the phone stops and the next agent rings."""
    mark = c.agents.mark()
    call, number = c.place()
    first = await c.offer(number, mark, timeout=c.queue.ring_timeout + 10)
    nxt = await c.offer(number, mark, exclude=[first["ua"]], timeout=c.queue.ring_timeout * 2 + 10)
    stopped = await c.agents.ended(first["call"], timeout=5)
    waited = nxt["t"] - first["t"]
    _expect(waited >= c.queue.ring_timeout - 0.5, f"next agent after {waited:.1f} s < ring_timeout")
    c.callers.hangup(call)
    return {"ring before next": waited, "first phone stopped": stopped["t"] - first["t"]}


async def offline_skipped(c: Checker) -> dict[str, float]:
    """An unregistered agent is not offered the call: the next one rings at once."""
    members = c.members(c.queue.name)
    offline = c.first_agent or members[0]
    await c.agents.unregister(offline)
    try:
        mark = c.agents.mark()
        call, number = c.place()
        offer = await c.offer(number, mark, timeout=c.queue.ring_timeout + 10)
        _expect(offer["ua"] != offline, f"{offline} is offline but was offered the call")
        c.callers.hangup(call)
        await c.agents.ended(offer["call"])
        return {"INVITE->agent INVITE": offer["t"] - await c.invite_time(call)}
    finally:
        await c.agents.register(offline)


async def caller_abandons(c: Checker) -> dict[str, float]:
    """The caller hangs up while an agent rings: the agent's phone stops ringing."""
    mark = c.agents.mark()
    call, number = c.place()
    offer = await c.offer(number, mark, timeout=c.queue.ring_timeout + 10)
    c.callers.hangup(call)
    hung = await c.callers.ended(call)
    stopped = await c.agents.ended(offer["call"], timeout=10)
    _expect(not stopped["answered"], "agent leg was answered")
    return {"caller gone->phone stops": stopped["t"] - hung["t"]}


async def wrapup(c: Checker) -> dict[str, float]:
    """Right after a call, the agent is in wrap-up: the next call goes to someone else."""
    if c.queue.wrapup <= 0:
        raise Skipped(f"queue {c.queue.name} has no wrap-up")
    await accept(c)
    assert c.last_answer_end is not None
    agent, ended = c.last_answer_end
    mark = c.agents.mark()
    call, number = c.place()
    offer = await c.offer(number, mark, timeout=c.queue.ring_timeout + 10)
    in_wrapup = offer["t"] - ended < c.queue.wrapup
    _expect(not (offer["ua"] == agent and in_wrapup), f"{agent} offered a call during wrap-up")
    c.callers.hangup(call)
    return {"after previous call": offer["t"] - ended}


async def confirm(c: Checker) -> dict[str, float]:
    """Confirm mode: 2 passes the call on, 1 connects it."""
    q = next((q for q in c.dep.setup.queues.values() if q.acceptance is Acceptance.CONFIRM), None)
    if q is None or len(c.members(q.name)) < 2:
        raise Skipped("no confirm-mode queue with 2 agents")
    mark = c.agents.mark()
    call, number = c.place(q.name)
    first = await c.offer(number, mark, timeout=q.ring_timeout + 10)
    c.agents.respond(first["call"], 200)
    await c.agents.wait(
        lambda e: e["ev"] == "state" and e["call"] == first["call"] and e["state"] == "CONFIRMED"
    )
    await asyncio.sleep(CONFIRM_PRESS_AFTER)
    c.agents.dtmf(first["call"], "2")
    pressed = await c.agents.wait(lambda e: e["ev"] == "dtmf_sent" and e["call"] == first["call"])
    nxt = await c.offer(number, mark, exclude=[first["ua"]], timeout=q.ring_timeout + 10)
    c.agents.respond(nxt["call"], 200)
    await c.agents.wait(
        lambda e: e["ev"] == "state" and e["call"] == nxt["call"] and e["state"] == "CONFIRMED"
    )
    await asyncio.sleep(CONFIRM_PRESS_AFTER)
    c.agents.dtmf(nxt["call"], "1")
    answered = await c.callers.answered(call)
    _expect(answered["state"] == "CONFIRMED", "caller not connected after 1")
    c.callers.hangup(call)
    if nxt["t"] < pressed["t"]:
        return {}  # ring_all: the other phones were already ringing, there is no "next" to time
    return {"2->next INVITE": nxt["t"] - pressed["t"]}


async def desktop(c: Checker) -> dict[str, float]:
    """Desktop mode: Accept through the API makes the phone ring with auto-answer; it answers."""
    q = next((q for q in c.dep.setup.queues.values() if q.acceptance is Acceptance.DESKTOP), None)
    if q is None:
        raise Skipped("no desktop-mode queue")
    if not c.dep.api_token:
        raise Skipped("no API token (--api-token)")
    members = c.members(q.name)
    call, number = c.place(q.name)
    mark = c.agents.mark()
    headers = {"Authorization": f"Bearer {c.dep.api_token}"}
    async with httpx.AsyncClient(base_url=c.dep.api_url, headers=headers, timeout=5) as http:
        offer_id = agent = None
        for _ in range(100):
            for a in members:
                view = (await http.get(f"/api/agents/{a}")).json()
                if view.get("offer"):
                    offer_id, agent = view["offer"]["id"], a
            if offer_id:
                break
            await asyncio.sleep(0.1)
        _expect(offer_id is not None, "no agent shows the offer in the API")
        t_accept = time.time()
        resp = await http.post(f"/api/offers/{offer_id}/accept")
        _expect(resp.status_code < 300, f"accept: HTTP {resp.status_code} {resp.text[:100]}")
    offer = await c.offer(number, mark, timeout=15)
    _expect(offer["ua"] == agent and bool(offer["auto_answer"]), "accepted offer rang without auto-answer")
    up = await c.agents.wait(
        lambda e: e["ev"] == "state" and e["call"] == offer["call"] and e["state"] == "CONFIRMED"
    )
    c.callers.hangup(call)
    return {"Accept->phone up": up["t"] - t_accept}


async def overflow(c: Checker) -> dict[str, float]:
    """A queue with max_wait: nobody answers, after max_wait the call moves on (an INVITE whose
    ``X-Acd-Queue`` names another queue: an agent of both queues may well be offered it again) and
    the caller stays on."""
    q = next(
        (q for q in c.dep.setup.queues.values() if q.max_wait and q.overflow and q.name in c.dep.extensions),
        None,
    )
    if q is None:
        raise Skipped("no queue with max_wait + overflow and an extension")
    mark = c.agents.mark()
    call, number = c.place(q.name)
    t0 = await c.invite_time(call)
    moved = await c.offer(number, mark, not_queue=q.name, timeout=q.max_wait + 15)
    waited = moved["t"] - t0
    _expect(waited >= q.max_wait - 0.5, f"left the queue after {waited:.1f} s < max_wait {q.max_wait:g} s")
    _expect(call in c.callers.live_calls(), "caller was hung up at max_wait instead of overflowing")
    c.callers.hangup(call)
    return {"overflowed after": waited}


SCENARIOS: list[Scenario] = [
    ("accept: agent answers, caller connected", accept),
    ("call details on the INVITE, no auto-answer", call_details),
    ("reject (603) -> next agent", reject_next),
    ("busy (486) -> next agent", busy_next),
    ("no answer -> next after ring_timeout", no_answer_next),
    ("offline agent skipped", offline_skipped),
    ("caller abandons while ringing -> phone stops", caller_abandons),
    ("wrap-up respected", wrapup),
    ("confirm: 2 passes on, 1 connects", confirm),
    ("desktop: Accept through the API", desktop),
    ("overflow after max_wait", overflow),
]


async def run_check(dep: Deployment, progress: Callable[[str], None] | None = None) -> list[Result]:
    bind = local_address_towards(dep.pbx)
    agents, callers = UaGroup("agents", bind=bind), UaGroup("callers", bind=bind)
    await agents.start()
    await callers.start()
    try:
        checker = Checker(dep, agents, callers)
        before = set(await dep.channels())  # calls of real customers going on: not ours
        ours = tuple(f"PJSIP/{dep.user_of(a)}-" for a in dep.setup.agents) + (f"PJSIP/{dep.caller_user}-",)
        await checker.start()

        async def leftovers() -> list[str]:
            return left_behind(before, await dep.channels(), ours)

        return await run_scenarios(
            SCENARIOS, checker, cleanup=checker.cleanup, leftovers=leftovers, progress=progress
        )
    finally:
        await callers.close()
        await agents.close()
        if dep.events_path:
            events = sorted(agents.events + callers.events, key=lambda e: e["t"])
            Path(dep.events_path).write_text("".join(json.dumps(e) + "\n" for e in events))  # noqa: ASYNC240
