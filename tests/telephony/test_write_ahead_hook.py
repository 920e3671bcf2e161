"""The shell's write-ahead hook (``Telephony.durable``, set by hot standby): a ring whose facts
the database did not confirm is never sent, the offer ends ``canceled``/``not_stored`` (no penalty)
and the next agent is rung; a caller whose row is not confirmed is not answered yet."""

from __future__ import annotations

from controller.sim import Answer
from tests.telephony.conftest import make_setup


async def test_unconfirmed_ring_is_not_sent_and_the_next_agent_is_rung(world_factory):
    confirms = iter([True, False])  # the park is confirmed, the first ring is not, then all are

    def prepare(_sim, controller) -> None:
        async def durable() -> bool:
            return next(confirms, True)

        controller.shell.durable = durable

    setup = make_setup({"alice": "alice", "bob": "bob"}, strategy="linear")
    w = await world_factory(setup, {"alice": Answer(after=0.5), "bob": Answer(after=0.5)}, prepare=prepare)
    caller = w.call()
    await caller.wait_for(lambda r: r.bridged_with is not None, timeout=30)
    rung = [name for name, phone in w.sim.phones.items() if phone.invites]
    assert len(rung) == 1 and caller.bridged_with == rung[0]
    ended = [r.data for r in w.records if r.kind == "offer.ended"]
    assert [(d["outcome"], d["detail"]) for d in ended][0] == ("canceled", "not_stored")
    assert ended[0]["agent"] != rung[0]
    assert w.controller.shell.stats["ring_not_stored"] == 1
    assert not any(r.kind == "agent.state" and r.data["reason"] == "missed" for r in w.records)


async def test_unconfirmed_caller_is_not_answered_until_an_agent_accepts(world_factory):
    def prepare(_sim, controller) -> None:
        answers = iter([False])

        async def durable() -> bool:
            return next(answers, True)

        controller.shell.durable = durable

    w = await world_factory(make_setup({"alice": "alice"}), {"alice": Answer(after=2.0)}, prepare=prepare)
    caller = w.call()
    await w.sim.phones["alice"].wait_for_invite(timeout=30)
    assert w.controller.shell.stats["park_not_stored"] == 1
    assert caller.answered_at is None and not caller.moh  # no answer, no music: not parked
    await caller.wait_for(lambda r: r.bridged_with == "alice", timeout=30)  # answered at the connect
