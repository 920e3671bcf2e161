"""Wire first: after an agent's 603 the next agent's originate goes out before the observers
(logs, panel, wallboard, metrics) are told, while the history recorders are told at once,
before it (hot standby's write-ahead waits on them)."""

from __future__ import annotations

from controller.acd import commands as cmd
from controller.ari import http
from controller.sim import Decline, NoAnswer
from tests.telephony.conftest import make_setup


async def test_next_originate_is_sent_before_listeners_hear_of_the_refusal(world_factory, monkeypatch):
    order: list[tuple[str, str]] = []
    real_request = http.HttpPool.request

    async def spy(self, head, body, timeout, **kw):
        if head.startswith(b"POST /ari/channels?"):  # an originate: rings a phone
            order.append(("originate", head.split(b"endpoint=", 1)[1].split(b"&", 1)[0].decode()))
        return await real_request(self, head, body, timeout, **kw)

    monkeypatch.setattr(http.HttpPool, "request", spy)

    def prepare(sim, controller):
        def heard(tag):
            def on(c):
                if isinstance(c, cmd.Record) and c.kind in ("offer.created", "offer.ended"):
                    order.append((tag, f"{c.kind}:{c.data.get('agent')}"))

            return on

        controller.shell.recorders.append(heard("recorder"))
        controller.shell.listeners.append(heard("listener"))

    w = await world_factory(
        make_setup({"alice": "agent1", "bob": "agent2"}, strategy="linear"),
        {"agent1": Decline(after=0.2), "agent2": NoAnswer()},
        prepare=prepare,
    )
    caller = w.call()
    await w.sim.phones["agent2"].wait_for_invite()
    await w.until(lambda: ("listener", "offer.created:bob") in order)
    caller.hangup()

    def at(item):
        return order.index(item)

    bob_rung = at(("originate", "PJSIP%2Fagent2"))
    # the refusal's history and bob's offer row were recorded before bob's phone was rung ...
    assert at(("recorder", "offer.ended:alice")) < bob_rung
    assert at(("recorder", "offer.created:bob")) < bob_rung
    # ... and the observers heard of both only after the originate was on its way
    assert bob_rung < at(("listener", "offer.ended:alice"))
    assert bob_rung < at(("listener", "offer.created:bob"))


def test_feed_outside_a_running_loop_tells_listeners_at_once():
    """A synchronous caller (a script, a REPL) gets its observers told before feed returns."""
    from controller.acd import events as ev
    from controller.telephony.shell import Telephony

    told: list[str] = []

    class OneRecord:
        def handle(self, event, now):
            return [cmd.Notify("alice", "agent.state", {})]

    shell = Telephony.__new__(Telephony)  # only what feed touches
    shell.engine = OneRecord()
    shell.clock = type("C", (), {"now": staticmethod(lambda: 0.0)})()
    shell.recorders, shell.listeners, shell._told_later = [], [lambda c: told.append(c.kind)], []
    shell.feed(ev.TimerFired("t"))
    assert told == ["agent.state"]
