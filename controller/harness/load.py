"""``acdctl harness load``: N calls/s for T s at an extension, measured from SIP timestamps.

Every figure comes from SIP timestamps of the caller's INVITE, the agents' INVITEs, the
agents' 200/603/486 and the caller's 200 (both sides run on one machine, same clock). Where
the harness may capture packets (:mod:`controller.harness.capture`) those are the kernel's
stamps of the packets on the wire (:func:`restamp`), else the phones' own. Calls are matched
to agent INVITEs by the caller number each call carries in P-Asserted-Identity (the PBX shows
it to the agent), so no PBX-side log is needed.

:func:`summarize` and :func:`restamp` are pure (events in, figures out) so they are tested
without any PBX.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from controller.harness.capture import PacketStamps, SipCapture
from controller.harness.ua import CALLS_PER_WORKER, Behaviour, Event, HarnessError, UaGroup

METRICS = {
    "invite_to_agent": "caller INVITE -> first agent INVITE",
    "answer_to_connected": "agent 200 OK -> caller 200 OK",
    "refusal_to_next": "agent 603/486 -> next agent INVITE",
}


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def restamp(
    caller_events: Sequence[Event], agent_events: Sequence[Event], stamps: PacketStamps
) -> tuple[list[Event], list[Event], dict[str, int]]:
    """The events :func:`summarize` times, with ``t`` replaced by their packet's kernel stamp.

    Caller: ``invite_sent`` -> its INVITE leaving, ``state CONFIRMED`` -> the PBX's 200 arriving.
    Agent: ``incoming`` -> the PBX's INVITE arriving, ``sent`` -> that response leaving. An event
    whose packet was not captured keeps the phone's stamp and is counted in ``unmatched``.
    """
    counts = {"stamped": 0, "unmatched": 0}

    def swap(e: Event, t: float | None) -> Event:
        if t is None:
            counts["unmatched"] += 1
            return e
        counts["stamped"] += 1
        return {**e, "t": t, "phone_t": e["t"]}

    def sip_ids(events: Sequence[Event]) -> dict[str, str]:  # our call id -> SIP Call-ID
        out: dict[str, str] = {}
        for e in events:
            if e.get("sip_call_id") and "call" in e:
                out.setdefault(e["call"], e["sip_call_id"])
        return out

    caller_sip, agent_sip = sip_ids(caller_events), sip_ids(agent_events)
    callers: list[Event] = []
    for e in caller_events:
        cid = caller_sip.get(e.get("call", ""))
        if e.get("ev") == "invite_sent":
            e = swap(e, stamps.request(cid, from_pbx=False) if cid else None)
        elif e.get("ev") == "state" and e.get("state") == "CONFIRMED":
            e = swap(e, stamps.response(cid, 200, from_pbx=True) if cid else None)
        callers.append(e)
    agents: list[Event] = []
    for e in agent_events:
        cid = agent_sip.get(e.get("call", ""))
        if e.get("ev") == "incoming":
            e = swap(e, stamps.request(cid, from_pbx=True) if cid else None)
        elif e.get("ev") == "sent":
            e = swap(e, stamps.response(cid, int(e["code"]), from_pbx=False) if cid else None)
        agents.append(e)
    return callers, agents, counts


@dataclass(slots=True)
class Placed:
    call: str
    number: str


def summarize(
    placed: Sequence[Placed], caller_events: Sequence[Event], agent_events: Sequence[Event], duration: float
) -> dict[str, Any]:
    """Offered/answered/abandoned, setups/s and p50/p95/p99 of the three delays (seconds)."""
    by_call: dict[str, list[Event]] = defaultdict(list)
    for e in caller_events:
        if "call" in e:
            by_call[e["call"]].append(e)
    legs: dict[str, list[Event]] = defaultdict(list)
    number_of_leg: dict[str, str] = {}
    for e in agent_events:
        if e.get("ev") == "incoming":
            number_of_leg[e["call"]] = e.get("number", "")
        if "call" in e:
            legs[e["call"]].append(e)
    offers: dict[str, list[Event]] = defaultdict(list)  # number -> agent INVITEs in time order
    for leg_id, number in number_of_leg.items():
        offers[number].append(legs[leg_id][0])
    for lst in offers.values():
        lst.sort(key=lambda e: e["t"])

    samples: dict[str, list[float]] = {k: [] for k in METRICS}
    answered = abandoned = failed = unfinished = 0
    errors: list[str] = [
        f"{e.get('where')}: {e.get('error')}" for e in caller_events if e.get("ev") == "error"
    ]
    errors += [f"{e.get('where')}: {e.get('error')}" for e in agent_events if e.get("ev") == "error"]
    invites = []
    for p in placed:
        evs = by_call.get(p.call, [])
        invite = next((e for e in evs if e["ev"] == "invite_sent"), None)
        if invite is None:
            failed += 1
            why = (
                "no free caller slot (add caller processes)"
                if p.call.startswith("not-placed")
                else "never sent"
            )
            errors.append(f"{p.call}: {why}")
            continue
        invites.append(invite["t"])
        confirmed = next((e for e in evs if e["ev"] == "state" and e["state"] == "CONFIRMED"), None)
        end = next((e for e in evs if e["ev"] == "state" and e["state"] == "DISCONNECTED"), None)
        agent_offers = offers.get(p.number, [])
        if agent_offers:
            samples["invite_to_agent"].append(agent_offers[0]["t"] - invite["t"])
        agent_answer = None
        for offer in agent_offers:
            for e in legs[offer["call"]]:
                if e["ev"] == "sent" and e["code"] == 200:
                    agent_answer = e
                elif e["ev"] == "sent" and e["code"] in (486, 603):
                    later = [o for o in agent_offers if o["t"] >= e["t"]]
                    if later:
                        samples["refusal_to_next"].append(later[0]["t"] - e["t"])
        agent_up = agent_answer is not None and any(
            e["ev"] == "state" and e["state"] == "CONFIRMED" for e in legs[agent_answer["call"]]
        )
        if agent_answer is not None and confirmed is not None and confirmed["t"] >= agent_answer["t"]:
            samples["answer_to_connected"].append(confirmed["t"] - agent_answer["t"])
        if end is None:
            unfinished += 1
            errors.append(f"{p.call}: still up at the end")
        elif agent_up:
            answered += 1
        elif end.get("by") == "us":
            abandoned += 1
        else:
            failed += 1
            errors.append(f"{p.call}: ended {end.get('code')} {end.get('reason')} without an agent")
    span = (max(invites) - min(invites)) if len(invites) > 1 else 0.0
    return {
        "offered": len(placed),
        "answered": answered,
        "abandoned": abandoned,
        "failed": failed,
        "unfinished": unfinished,
        "offered_per_s": round(len(invites) / span, 2) if span else None,
        "answered_per_s": round(answered / duration, 2) if duration else None,
        "percentiles_ms": {
            k: {
                f"p{p}": (round(v * 1000, 2) if (v := percentile(samples[k], p)) is not None else None)
                for p in (50, 95, 99)
            }
            | {"n": len(samples[k])}
            for k in METRICS
        },
        "errors": errors[:50],
        "error_count": len(errors),
    }


@dataclass(slots=True)
class LoadPlan:
    rate: float  # calls per second
    duration: float  # seconds of offering
    exten: str
    label: str
    patience: float = 30.0  # a caller gives up (CANCEL/BYE) after this many seconds without an agent
    talk: float = 1.0  # agents hang up this long after answering


async def run_load(
    plan: LoadPlan,
    agent_groups: Sequence[UaGroup],
    callers: Sequence[UaGroup],
    pbx: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    drain: float = 60.0,
    capture: SipCapture | None = None,
) -> dict[str, Any]:
    """Offer ``rate`` calls/s for ``duration`` s round-robin over the caller processes, wait for
    every call to end (at most ``drain`` s), and summarize from that run's events only (timed
    by the captured packets when ``capture`` runs)."""
    capture_mark = capture.mark() if capture is not None else 0
    agent_marks = [g.mark() for g in agent_groups]
    caller_marks = [c.mark() for c in callers]
    total = max(1, round(plan.rate * plan.duration))
    base = int(time.time() * 10) % 10_000_000 * 1000
    placed: list[Placed] = []
    owner: dict[str, UaGroup] = {}
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(total):
        due = t0 + i / plan.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        number = str(base + i)
        group = min(callers, key=lambda g: len(g.outstanding))
        if len(group.outstanding) >= CALLS_PER_WORKER:
            placed.append(Placed(f"not-placed-{i}", number))  # counted as failed: harness too small
            continue
        headers = {"P-Asserted-Identity": f'"Load {i}" <sip:{number}@{pbx}>'}
        call = group.call(
            "caller",
            f"sip:{plan.exten}@{pbx}",
            headers=headers,
            cancel_after=plan.patience,
            hangup_after=plan.patience,
        )
        placed.append(Placed(call, number))
        owner[call] = group
        if progress:
            progress(i + 1, total)
    offered_for = loop.time() - t0
    deadline = loop.time() + drain
    for p in placed:
        if p.call in owner:
            with contextlib.suppress(HarnessError):  # still up at the deadline: reported as unfinished
                await owner[p.call].ended(p.call, timeout=max(0.01, deadline - loop.time()))
    for g in agent_groups:
        await g.settle(timeout=max(1.0, deadline - loop.time()))
    caller_events = [e for c, m in zip(callers, caller_marks, strict=True) for e in c.events[m:]]
    agent_events = [e for g, m in zip(agent_groups, agent_marks, strict=True) for e in g.events[m:]]
    clock: dict[str, Any] = {"clock": "phones"}
    if capture is not None:
        caller_events, agent_events, counts = restamp(
            caller_events, agent_events, capture.stamps(capture_mark)
        )
        clock = {"clock": "packets", **counts}
    summary = summarize(placed, caller_events, agent_events, offered_for)
    return (
        {"label": plan.label, "exten": plan.exten, "rate": plan.rate, "duration": plan.duration}
        | summary
        | clock
    )


def mixed_behaviours(specs: Sequence[str], count: int) -> list[Behaviour]:
    """``["answer:0.2:1", "decline:0.1"]`` cycled over ``count`` agents."""
    parsed = [Behaviour.parse(s) for s in specs] or [Behaviour("answer", ring=0.2, talk=1.0)]
    return [parsed[i % len(parsed)] for i in range(count)]


class ProgressBar:
    """A one-line bar on a terminal stream; quiet when it is not a terminal."""

    def __init__(self, stream: Any, label: str, width: int = 30) -> None:
        self.stream = stream
        self.label = label
        self.width = width
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.tty and done != total:
            return
        filled = round(self.width * done / total)
        end = "\n" if done == total else ""
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}{end}")
        self.stream.flush()
