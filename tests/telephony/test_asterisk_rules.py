"""What a real Asterisk 22 demands of the controller (issue #11), on the strict simulator.

Each test names the rule; the traces in ../shared/ari-api-docs/traces/ show the real behaviour.
"""

from __future__ import annotations

from dataclasses import replace

from controller.acd.setup import Acceptance, AcdSetup, AgentConfig, DialplanTarget, Membership, QueueConfig
from controller.sim import Answer, Decline, NoAnswer
from tests.telephony.conftest import SPEED, make_setup
from tests.timing import late

TWO = {"alice": "agent1", "bob": "agent2"}


def outcomes(w, call_id: str) -> list[tuple[str, str]]:
    return [
        (r.data["agent"], r.data["outcome"])
        for r in w.records
        if r.kind == "offer.ended" and r.data["call"] == call_id
    ]


def agent_channels(channels) -> list:
    return [c for c in channels if c.name.startswith("PJSIP/agent")]


# --------------------------------------------------------------------------- 1. one originate


def ring_requests(w) -> list:
    return [
        r
        for r in w.sim.rest_log
        if r.method == "POST" and (r.path in ("/channels", "/channels/create") or r.path.endswith("/dial"))
    ]


async def test_an_agent_is_rung_with_one_originate_showing_the_offer(world_factory):
    # originate_variant.json: callerId sets what the phone shows (From/PAI), X-Acd-* via variables
    w = await world_factory(make_setup(TWO), {"agent1": Answer(after=0.5), "agent2": Answer()})
    caller = w.call(caller_name='Ma"ria <x>', caller_number="5551234")
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    assert [r.path for r in ring_requests(w)] == ["/channels"]
    invite = w.sim.phones["agent1"].last_invite
    name, number = invite.display
    assert name.startswith("[support 0:0") and name.endswith('] Ma"ria <x>'), name
    assert number == "5551234"
    assert invite.headers["X-Acd-Queue"] == "support" and not invite.auto_answer
    assert outcomes(w, caller.channel_id) == [("alice", "accepted")]


async def test_a_leg_is_answered_for_the_engine_only_at_its_stasis_start(world_factory):
    # The Up comes before the StasisStart (originate_variant.json); play/addChannel need Stasis.
    # Its StasisStart lost, the answered leg waits for the reconciliation to see it in Stasis.
    w = await world_factory(make_setup(TWO, ring_timeout=60), {"agent1": NoAnswer(), "agent2": Answer()})
    shell = w.controller.shell
    handle = shell.on_event

    handled_up: list[str] = []

    async def lose_leg_stasis_start(event):
        if not (event.type == "StasisStart" and event.args and event.args[0] == "offer"):
            await handle(event)
        if event.type == "ChannelStateChange" and event.channel.state == "Up":
            handled_up.append(event.channel.id)

    w.controller.stream._handler = lose_leg_stasis_start
    caller = w.call()
    invite = await w.sim.phones["agent1"].wait_for_invite()
    await invite.wait_for(lambda i: i.outcome == "ringing", timeout=30)
    await shell.reconcile()
    await shell.reconcile()  # the app lists the ringing leg: still not in Stasis
    assert [leg.in_stasis for leg in shell.legs.values()] == [False]
    invite.answer()
    await w.until(lambda: handled_up)
    await shell.lanes.drain()
    offer = next(iter(w.engine.offers.values()))
    assert offer.state.name == "RINGING", "not connected on the Up alone"
    assert caller.bridged_with is None
    await shell.reconcile()  # first sight: a suspicion only
    await shell.reconcile()
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    assert shell.repairs["leg_answered"] == 1


async def test_asterisks_own_originate_timeout_is_a_dial_timeout(world_factory):
    # originate_variant.json part 3: only ChannelDestroyed 19/480, no hangup request before it
    w = await world_factory(
        make_setup(TWO, ring_timeout=60, unreachable_delay=600), {"agent1": NoAnswer(), "agent2": Answer()}
    )
    client = w.controller.client
    originate = client.originate

    async def short(*args, **kw):
        kw["timeout"] = 1  # Asterisk gives up before the engine's own ring timer
        return await originate(*args, **kw)

    client.originate = short
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    ended = [r.data for r in w.records if r.kind == "offer.ended"]
    assert (ended[0]["agent"], ended[0]["outcome"]) == ("alice", "no_answer")
    assert w.engine.agents["alice"].misses == 1 and not w.engine.agents["alice"].delayed


async def test_a_leg_ends_at_its_hangup_request_with_a_cause(world_factory):
    # agent 603: ChannelHangupRequest 21/603 comes before ChannelDestroyed; the next agent is rung
    # on the first, so with every ChannelDestroyed lost the outcome is still "rejected".
    w = await world_factory(
        make_setup(TWO, ring_timeout=60, reject_delay=600), {"agent1": Decline(after=0.5), "agent2": Answer()}
    )
    handle = w.controller.shell.on_event

    async def lose_destroyed(event):
        if event.type != "ChannelDestroyed":
            await handle(event)

    w.controller.stream._handler = lose_destroyed
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    assert outcomes(w, caller.channel_id) == [("alice", "rejected"), ("bob", "accepted")]


# --------------------------------------------------------------------------- 2. back into Stasis


def _sales_and_support() -> AcdSetup:
    sales = QueueConfig("sales", max_wait=2, overflow=DialplanTarget("acd-overflow", "102", 1))
    support = QueueConfig("support")
    return AcdSetup(
        queues={"sales": sales, "support": support},
        agents={"alice": AgentConfig("alice", "Alice", "PJSIP/agent1", (Membership("support"),))},
    )


async def test_a_caller_sent_back_into_stasis_is_a_new_call_with_its_new_args(world_factory):
    # continue_back_into_stasis.json: same channel id, a new StasisStart with the new args
    def prepare(sim, controller):
        sim.dialplan["105"] = ("acd", ["sales"])
        sim.dialplan["acd-overflow,102"] = "NoOp, Stasis(acd,support,10)"

    w = await world_factory(_sales_and_support(), {"agent1": Answer(after=0.5)}, prepare=prepare)
    caller = w.sim.place_call("105")
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=20)
    queued = [r.data for r in w.records if r.kind == "call.queued"]
    assert [(q["queue"], q["priority"]) for q in queued] == [("sales", 0), ("support", 10)]
    assert queued[1]["call"] != queued[0]["call"], "a new call for the new Stasis session"
    ended = [r.data for r in w.records if r.kind == "call.ended"]
    assert [(e["queue"], e["outcome"]) for e in ended] == [("sales", "overflowed")]
    assert w.controller.shell.stats["duplicate_stasis_start"] == 0


# --------------------------------------------------------------------------- 6. confirm: 1 at once


async def test_pressing_1_during_the_prompt_connects_at_once(world_factory):
    # confirm_dtmf_during_prompt.json: addChannel of a playing channel waits for the playback's
    # end. The prompt here lasts 1,000 s: the call can only be bridged if the controller stops it.
    setup = make_setup(TWO, acceptance=Acceptance.CONFIRM)
    w = await world_factory(
        setup,
        {"agent1": Answer(after=0.5, dtmf=((0.3, "1"),)), "agent2": Answer()},
        sim_kw={"add_waits_for_playback": True, "sound_durations": {"beep": 1000.0}},
    )
    caller = w.call(caller_number="5551234567")
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=20)
    stops = [r for r in w.sim.rest_log if r.method == "DELETE" and r.path.startswith("/playbacks/")]
    assert [r.status for r in stops] == [204], "the running prompt was stopped, then the agent bridged"
    adds = [r for r in w.sim.rest_log if r.method == "POST" and r.path.endswith("/addChannel")]
    assert adds and all(r.status == 204 for r in adds) and stops[0].t <= adds[-1].t


# --------------------------------------------------------------------------- 7. privacy


async def test_the_customer_never_sees_the_agent_leg_identity(world_factory):
    # bridge_connected_line_privacy.json: a plain addChannel sends the customer the agent's identity
    w = await world_factory(make_setup(TWO), {"agent1": Answer(after=0.5), "agent2": Answer()})
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    assert not caller.identities_shown, caller.identities_shown
    assert not w.sim.phones["agent1"].last_invite.identities_shown


async def test_the_customer_sees_the_queues_configured_identity(world_factory):
    q = replace(QueueConfig("support"), customer_sees_name="ACME Support", customer_sees_number="5550100")
    w = await world_factory(make_setup(TWO, queue=q), {"agent1": Answer(after=0.5), "agent2": Answer()})
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    channel = await w.controller.client.get_channel(caller.channel_id)
    assert (channel.connected.name, channel.connected.number) == ("ACME Support", "5550100")
    assert all("agent" not in name and "[" not in name for _, name, _ in caller.connected_updates)


# --------------------------------------------------------------------------- 8. Local channels


async def test_a_call_through_a_local_channel_works_end_to_end(world_factory):
    # local_channel_optimization.json: the app only ever sees Local/…;2, never optimised away
    def prepare(sim, controller):
        sim.dialplan["from-customer,103"] = "Dial(Local/101@from-customer)"

    w = await world_factory(make_setup(TWO), {"agent1": Answer(after=0.5, hangup_after=2)}, prepare=prepare)
    caller = w.sim.place_call("103")
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    call_id = next(r.data["call"] for r in w.records if r.kind == "call.queued")
    channel = next(c for c in await w.channels() if c.id == call_id)
    assert channel.name.startswith("Local/101@from-customer-") and channel.name.endswith(";2")
    await caller.wait_for(lambda c: c.ended_at is not None, timeout=30)
    ended = [r.data for r in w.records if r.kind == "call.ended"]
    assert ended[0]["outcome"] == "completed" and ended[0]["hung_up_by"] == "agent"
    await w.until(lambda: not w.engine.calls and not w.controller.shell.calls)


# --------------------------------------------------------------------------- 10. subscriptions


async def test_restarts_do_not_pile_up_endpoint_subscriptions(world_factory):
    from controller.app import Controller

    w = await world_factory(make_setup(TWO), {"agent1": Answer(after=0.5), "agent2": Answer()})
    setup = make_setup(TWO)
    kw = dict(ari_url=w.sim.base_url, ari_user="acd", ari_password="secret", clock=w.controller.clock)
    await w.controller.stop()
    for _ in range(3):
        again = Controller(setup, **kw)
        await again.start()
        await again.stop()
    app = await w.controller.client.get_application()
    assert sorted(app.endpoint_ids) == ["PJSIP/agent1", "PJSIP/agent2"]
    subscribes = [
        r for r in w.sim.rest_log if (r.method, r.path) == ("POST", "/applications/acd/subscription")
    ]
    assert len(subscribes) == 1, "Asterisk counts every subscribe: only the first start subscribes"


async def test_an_endpoint_no_agent_uses_any_more_is_unsubscribed(world_factory):
    w = await world_factory(make_setup(TWO), {"agent1": Answer(), "agent2": Answer(), "agent3": Answer()})
    await w.controller.client.subscribe(["endpoint:PJSIP/agent3"])  # a removed agent's, from an earlier run
    await w.controller.client.subscribe(["endpoint:PJSIP/agent3"])
    await w.controller.shell.watch_endpoints()
    app = await w.controller.client.get_application()
    assert sorted(app.endpoint_ids) == ["PJSIP/agent1", "PJSIP/agent2"]


async def test_agent_channel_events_delivered_twice_count_once(world_factory):
    # an app subscribed to a channel and to its endpoint gets the channel's events twice
    w = await world_factory(
        make_setup(TWO, acceptance=Acceptance.CONFIRM),
        {"agent1": Answer(after=0.5, dtmf=((0.5, "2"),)), "agent2": Answer(after=0.5, dtmf=((0.5, "1"),))},
        sim_kw={"duplicate_channel_events": True},
    )
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    assert outcomes(w, caller.channel_id) == [("alice", "rejected"), ("bob", "accepted")]
    assert w.controller.shell.stats["duplicate_event"] > 0
    assert w.engine.stats["stale_digit"] == 0 and w.engine.stats["duplicate_answer"] == 0


async def test_the_same_event_delivered_twice_counts_once(world_factory):
    w = await world_factory(make_setup(TWO, ring_timeout=30), {"agent1": Answer(after=1), "agent2": Answer()})
    shell = w.controller.shell
    handle = shell.on_event

    async def twice(event):
        await handle(event)
        await handle(event)

    w.controller.stream._handler = twice
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    caller.hangup()
    await w.until(lambda: any(r.kind == "call.ended" for r in w.records))
    assert [r.kind for r in w.records].count("call.queued") == 1
    assert [r.kind for r in w.records].count("call.connected") == 1
    assert [r.kind for r in w.records].count("call.ended") == 1
    assert shell.stats["duplicate_event"] > 0


# --------------------------------------------------------------------------- 9. endpoints appearing later


async def test_an_endpoint_created_later_in_asterisk_is_watched_and_rung(world_factory):
    w = await world_factory(make_setup(TWO), {"agent1": Answer(after=0.5)})  # agent2 unknown to Asterisk
    shell = w.controller.shell
    assert "PJSIP/agent2" in shell.unknown_endpoints
    w.controller.engine.agents["alice"].reachable = False  # make bob the only one who can take it
    w.sim.phones["agent1"].unregister()
    w.sim.add_phone("agent2", Answer(after=0.5))
    await shell.watch_endpoints(full=False)
    assert "PJSIP/agent2" not in shell.unknown_endpoints
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)


# --------------------------------------------------------------------------- 4. websocket down


async def test_while_the_websocket_is_down_a_ringing_timer_is_not_a_miss(world_factory):
    # The ring timer must still run when the controller notices the drop (a loaded machine may
    # take a while): ring_timeout = the suite's allowed lateness; the outage lasts well past it.
    # Asterisk's own dial timeout (ring + dial_backstop) must outlast the outage.
    ring = late(SPEED)
    w = await world_factory(
        make_setup(TWO, ring_timeout=ring, dial_backstop=10 * ring),
        {"agent1": NoAnswer(), "agent2": Answer(after=0.5)},
    )
    caller = w.call()
    invite = await w.sim.phones["agent1"].wait_for_invite()
    w.sim.refuse_websockets(3 * ring)
    await w.sim.drop_connections()
    await w.until(lambda: not w.controller.stream.connected)
    # the ring timer runs out while we are deaf: held, then resumed
    back = 10 * ring  # clock seconds, only for failure
    await w.until(lambda: w.controller.stream.connected and w.controller.shell.online.is_set(), timeout=back)
    assert w.controller.shell.stats["timer_resumed"] >= 1
    invite.answer()
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=back)
    assert w.engine.agents["alice"].misses == 0


async def test_a_leg_that_ended_during_the_outage_counts_against_nobody(world_factory):
    """Its ChannelDestroyed (and so its cause) is lost with the websocket: after the resync the
    offer is canceled as lost, the agent gets no unreachable delay and takes the next call."""
    w = await world_factory(
        make_setup(TWO, ring_timeout=30, unreachable_delay=600, reject_delay=600),
        {"agent1": NoAnswer(), "agent2": NoAnswer()},
    )
    caller = w.call()
    invite = await w.sim.phones["agent1"].wait_for_invite()
    w.sim.refuse_websockets(1.0)
    await w.sim.drop_connections()
    await w.until(lambda: not w.controller.stream.connected)
    invite.reject(603)  # lost: the controller never learns why the leg ended
    await w.until(lambda: w.controller.shell.repairs["leg_gone"] == 1, timeout=20)
    assert outcomes(w, caller.channel_id)[0] == ("alice", "canceled")
    alice = w.engine.agents["alice"]
    assert not alice.delayed and alice.misses == 0


async def test_an_agent_answering_while_the_app_has_no_websocket_counts_against_nobody(world_factory):
    """Its Stasis() fails (the app is not active: res_stasis.c stasis_app_exec) and Asterisk hangs
    the leg up; the resync finds it gone: canceled as lost, and the caller is offered again."""
    w = await world_factory(
        make_setup({"alice": "agent1"}, ring_timeout=30, unreachable_delay=600, reject_delay=600),
        {"agent1": [NoAnswer(), Answer(after=0.5)]},
    )
    caller = w.call()
    invite = await w.sim.phones["agent1"].wait_for_invite()
    w.sim.refuse_websockets(1.0)
    await w.sim.drop_connections()
    await w.until(lambda: not w.controller.stream.connected)
    invite.answer()
    await invite.wait_for(lambda i: i.outcome == "ended", timeout=30)
    assert invite.bye_reasons == ["Q.850;cause=0"], "hung up by Asterisk, never in Stasis"
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    assert len(w.sim.phones["agent1"].invites) == 2, "offered again"
    assert w.controller.shell.repairs["leg_gone"] == 1
    assert outcomes(w, caller.channel_id) == [("alice", "canceled"), ("alice", "accepted")]
    assert w.engine.agents["alice"].misses == 0


async def test_no_offer_is_made_while_the_websocket_is_down(world_factory):
    w = await world_factory(
        make_setup({"alice": "agent1"}, wrapup=3), {"agent1": Answer(after=0.5, hangup_after=0.5)}
    )
    shell = w.controller.shell
    first = w.call()
    await first.wait_for(lambda c: c.ended_at is not None, timeout=30)
    await w.until(lambda: w.engine.agents["alice"].in_wrapup)
    second = w.call()
    await w.until(lambda: second.channel_id in w.engine.calls)
    w.sim.refuse_websockets(6.0)
    await w.sim.drop_connections()
    await w.until(lambda: not w.controller.stream.connected)
    # alice's wrap-up ends while we are deaf: the offer waits for the resync
    await w.until(lambda: shell.stats["ring_held_offline"] >= 1 or shell._held_timers, timeout=20)
    assert len(w.sim.phones["agent1"].invites) == 1
    await second.wait_for(lambda c: "agent1" in c.ever_bridged_with, timeout=30)


def test_the_queue_file_sets_what_the_customer_sees(tmp_path):
    from controller.config import ConfigError, load_setup

    path = tmp_path / "acd.toml"
    agent = '[agents.alice]\nendpoint = "PJSIP/agent1"\nqueues = ["support"]\n'
    path.write_text(
        f'[queues.support]\ncustomer_sees_name = "ACME Support"\ncustomer_sees_number = "+15550100"\n{agent}'
    )
    q = load_setup(path).queues["support"]
    assert (q.customer_sees_name, q.customer_sees_number) == ("ACME Support", "+15550100")
    path.write_text(f'[queues.support]\ncustomer_sees_number = "agent1"\n{agent}')
    try:
        load_setup(path)
    except ConfigError as exc:
        assert "customer_sees_number" in str(exc)
    else:
        raise AssertionError("a number with letters is refused")


async def test_a_ringing_leg_left_by_an_earlier_run_is_hung_up_at_the_resync(world_factory):
    # GET /applications lists it (originate subscribes the app) though it is not in Stasis (AppDial2)
    w = await world_factory(make_setup(TWO), {"agent1": NoAnswer(), "agent2": NoAnswer()})
    await w.controller.client.originate(
        "PJSIP/agent1", app_args=["offer", "old-offer", "old-call"], channel_id="old-offer.abc123", timeout=60
    )
    invite = await w.sim.phones["agent1"].wait_for_invite()
    assert "old-offer.abc123" in (await w.controller.client.get_application()).channel_ids
    await w.controller.shell.reconcile(at_connect=True)
    await invite.wait_for(lambda i: i.outcome == "cancelled", timeout=30)
    assert w.controller.shell.repairs["orphan_leg"] == 1
    assert not any(r.kind == "call.queued" for r in w.records), "not taken for a customer"


def test_the_offer_label_survives_asterisks_caller_id_parsing():
    # res/ari originate reads callerId with ast_callerid_parse (main/callerid.c), which the sim ports
    from controller.sim.model import parse_callerid
    from controller.telephony.actions import caller_id

    for name, number, shown in [
        ("[support 0:42] Maria", "5551234", ("[support 0:42] Maria", "5551234")),
        ('Ma"ria <x>', "55<5>1", ('Ma"ria <x>', "5551")),
        ("back\\slash\\", "+55 11 5555", ("back\\slash\\", "+55 11 5555")),
        ('"quoted"', "", ('"quoted"', "")),
        ("line\nbreak\x00", '12"3', ("linebreak", "123")),
        ("", "", ("", "")),
    ]:
        assert parse_callerid(caller_id(name, number)).as_tuple() == shown, name
