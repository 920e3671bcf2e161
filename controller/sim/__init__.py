"""A simulated Asterisk 22.10.1 that speaks real ARI (REST + events websocket) over HTTP.

It is the phone network of the test harness and the engine of ``acdctl demo``. The controller
connects to it exactly as to a real Asterisk: REST with basic auth (or ``api_key``) under ``/ari``,
events on ``ws://HOST:PORT/ari/events?app=acd&api_key=user:pass``. Event sequences, snapshots,
causes and error bodies reproduce the golden traces (``ari-api-docs/traces`` in the shared folder,
``../shared`` beside the repository or ``$ACD_SHARED_DIR``; tests/sim/test_traces.py replays them).

Quick start::

    from controller.clock import Clock
    from controller.sim import SimAsterisk, Answer, Decline, NoAnswer

    sim = SimAsterisk(clock=Clock(speed=20), seed=1, user="acd", password="acd")
    url = await sim.start("127.0.0.1", 0)            # "http://127.0.0.1:PORT"; ARI at sim.ari_url
    sim.dialplan["101"] = ("acd", ["support"])        # exten 101 -> Stasis(acd,support) (the default)
    agent = sim.add_phone("agent1", Answer(after=1.0, hangup_after=30))
    flaky = sim.add_phone("agent2", [Decline(after=0.5), Answer(after=1.0)])  # 1st offer 603, then answer
    sim.add_phone("agent3", registered=False)          # offline: create/originate -> 500 Allocation failed
    call = sim.place_call("101", caller_number="5551234", caller_name="Maria",
                          headers={"X-Ticket": "42"}, hangup_after=60)   # patience 60 s
    await call.wait_for(lambda c: c.bridged_with == "agent1", timeout=10)
    assert agent.last_invite.display == ("Maria", "5551234")
    await sim.stop()

Main API (all delays and timeouts are clock seconds, i.e. scaled by ``Clock.speed``):

``SimAsterisk(*, clock=None, seed=0, user="asterisk", password="asterisk", asterisk_id=..., epoch=None,
sip_host="127.0.0.1", dialplan=None, sound_durations=None, default_sound_duration=1.0,
event_log_size=20_000, record_limit=None, stasis_entry_delay=0.0, event_delay=0.0,
duplicate_channel_events=True, add_waits_for_playback=True, users=None)``
    ``await start(host="127.0.0.1", port=0) -> str``, ``await stop()``, ``async with SimAsterisk(...)``,
    ``base_url``, ``ari_url``, ``ws_url(app="acd", subscribe_all=False)``;
    ``dialplan`` (``exten`` or ``"context,exten"`` -> DialplanEntry; tuples, ``"Stasis(acd,x)"`` and
    application lists like ``"NoOp, Stasis(acd,support,10)"`` or ``"Dial(Local/101@from-customer)"``
    accepted; ``dialplan.load(text)`` runs an extensions.conf as it is (Set, GotoIf, Goto, labels,
    Wait, Ringing, ``${VAR}``, simple ``$[...]``); see controller.sim.dialplan);
    ``stasis_entry_delay`` (settable): clock seconds from a ``/channels/create`` 200 to that channel's
    StasisStart -- its ChannelCallerId/ChannelConnectedLine, ChannelDialplan and ``STASISSTATUS=""``
    come with it, always after the 200; before it dial/answer/play/moh/continue/variable... get 409
    ``Channel not in Stasis application`` (addChannel 422, as res/ari) and change nothing, DELETE
    works; ``event_delay`` (settable): clock seconds every event takes to reach the websockets (REST
    answers are not delayed: a dial's 204 can overtake the StasisStart);
    ``add_waits_for_playback`` (settable; Asterisk's behaviour, on by default): ``addChannel`` of a
    channel that is playing moves the other
    channels at once and answers 204 only after that playback's PlaybackFinished;
    ``duplicate_channel_events`` (settable; Asterisk's behaviour, on by default): an app subscribed to
    a channel and to its endpoint gets the channel's events twice;
    ``faults`` (controller.sim.faults: ``add(method, path_regex, *, status=None, body=None, delay=0.0,
    times=1, apply=False) -> Fault``, ``remove``, ``clear``, ``active``), ``refuse_websockets(seconds=None,
    status=503) -> Fault``; ``rest_log`` (RestRecord: method, path, status, t, events_before, user);
    ``users``: more ARI users (``{user: password}``, as several ``ari.conf`` users) whose REST
    requests (``RestRecord.user``) and events websockets (``ws_log``: (t, user, apps)) are told apart;
    ``add_phone(name, behaviour=Answer(), *, registered=True, display_name=None, number=None,
    context="from-agents", honor_auto_answer=False) -> Phone``; ``phones``;
    ``place_call(exten="101", caller_number="5551234", caller_name="Maria", *, headers=None,
    hangup_after=None, hangup_after_answer=None, talk_time=None, dtmf=(), endpoint="customer",
    delay=0.0, via_local=False) -> Caller`` (``via_local``: through ``Dial(Local/<exten>@from-customer)``,
    the app sees only the Local ``;2`` channel); phones may be added, registered and unregistered
    at any time;
    ``calls``; ``traffic(rate=..., seed=None, **kw) -> TrafficGenerator``;
    ``await drop_connections(app=None, *, refuse_for=None)`` closes the app's websocket(s) server-side
    (and refuses new ones for ``refuse_for`` clock seconds);
    ``event_log`` (list of EventRecord: app, type, raw, data, delivered, t),
    ``events(app=None, types=None)``;
    ``await wait_for(pred, timeout=5)``,
    ``await wait_for_event(type_, app=None, where=None, timeout=5, after=0)``;
    ``app_active(app)``; ``channels`` / ``bridges`` (live engine state).

Phone behaviours (``controller.sim.phones``): ``Answer(after=0.5, hangup_after=None, dtmf=((1.0, "1"),),
dtmf_duration_ms=200, ring_delay=0)``, ``Reject(code, after, ring=True)``, ``Decline()`` 603, ``Busy()`` 486,
``DND()`` 480, ``NoAnswer()`` (rings until CANCEL/timeout), ``Dead()`` (registered, never answers). A phone
takes one behaviour, a sequence (per call, last repeats) or ``callable(invite) -> behaviour``.
``Phone``: ``register()``, ``unregister()``, ``registered``, ``invites``, ``last_invite``, ``active_calls``,
``await wait_for_invite(count=1, timeout=5)``.

``Invite`` (one INVITE a phone got): ``from_name``, ``from_number``, ``display``, ``from_header``,
``p_asserted_identity``, ``remote_party_id``, ``headers`` (PJSIP_HEADER(add,...)), ``auto_answer`` /
``auto_answer_headers``, ``outcome`` (trying/ringing/answered/rejected/cancelled/ended), ``final_code``,
``cancel_reasons`` (e.g. ``SIP;cause=200;text="Call completed elsewhere"``), ``bye_reasons``, ``ended_by``,
``media`` (MediaSegment: peer, peer_channel, start, end), ``bridged_with``, ``talk_time``,
``connected_updates`` / ``identities_shown`` / ``update_pais`` (the SIP UPDATEs received when bridged),
``dtmf_received``, ``playbacks``; actions ``answer()``, ``reject(code)``,
``hangup()``, ``send_dtmf(digit)``; ``await wait_for(pred, timeout)``.

``Caller``: ``outcome`` (ringing/answered/abandoned/hung_up/disconnected/continued/refused/no_route),
``answered``, ``answered_at``, ``ringback`` / ``moh`` (Interval lists), ``hearing_moh``, ``media``,
``bridged_with``, ``connected_line`` / ``connected_updates`` / ``identities_shown`` / ``update_pais``
(what the phone was shown after the call was set up: assert e.g. that no internal extension is in
``identities_shown``), ``sip_final``,
``final_reasons``, ``bye_reasons``, ``hangup_cause``, ``continued_to`` (context, exten, priority),
``fallback`` (where the dialplan continued after a refused Stasis), ``channel_id`` (the channel the
app sees; ``sip_channel_id`` is the caller's own channel when it came through a Local pair); actions
``hangup()``, ``send_dtmf(digits)``; ``await wait_for(pred, timeout)``.

``TrafficGenerator(sim, *, rate, seed=0, extens="101", patience=exponential(60), talk_time=exponential(120),
names=..., number_prefix="555", headers=None, max_calls=None, duration=None)``: ``plan(n)`` (deterministic
CallSpecs), ``start()``, ``stop()``, ``await wait_done()``, ``calls``.

Everything runs on the caller's asyncio loop: create, configure and drive the sim from async code.

Deviations from a real Asterisk kept on purpose (see also tests/sim/test_traces.py):

- No SIP/RTP on the wire: phones and callers are in-process objects; their records say what a UA
  would have seen (From/PAI/RPID, Reason headers, UPDATEs, final codes, audio spans).
- Operations are atomic, so events of simultaneous requests never interleave (a real Asterisk may,
  e.g. two concurrent DELETEs); ``ChannelStateChange(Ringing)`` always precedes ``Dial RINGING``
  (Asterisk races them).
- The hidden MOH announcer is not listed in a holding bridge's ``channels`` (it consumes two
  uniqueids, as in Asterisk). ``native_rtp``/``simple_bridge``/``softmix`` follow the traced rule.
- Subscriptions follow res/stasis/app.c: one forward per event source with a count (N subscribes
  need N unsubscribes; ``GET /applications`` lists the source once); they outlive the websocket and
  a reconnecting app of the same name finds them; an endpoint subscription also forwards that
  endpoint's channels' events (ChannelCreated...), so with ``duplicate_channel_events`` an app
  subscribed to both gets them twice (nothing de-duplicates in Asterisk).
- Not traced, inferred from Asterisk's source: ``addChannel`` of a channel without Stasis control
  -> 422 (res/ari/resource_bridges.c);
  ``inhibitConnectedLineUpdates`` on either channel's join suppresses the exchange (traced: the
  joint request and the second channel's own request); a Local chain hung up from outside gives its
  ``;2`` ChannelHangupRequest cause 16 (traced for BYE, assumed for CANCEL); originate rejected with
  486 ends with ``Dial BUSY``
  (603 -> ``NOANSWER`` is traced); DELETE of a ringing originated channel gives ChannelHangupRequest
  32 soft, a final ``Dial`` (main/dial.c ast_hangup_cause_to_dial_status: NOANSWER for 16/26) and
  ChannelDestroyed with the reason's cause; an originated channel answered while its app is not
  active (no websocket) or not registered fails ``Stasis()`` (res_stasis.c stasis_app_exec) and is
  hung up with no cause set: no hangup request, ChannelDestroyed 0, the phone's BYE
  ``Reason: Q.850;cause=0``; ``callerId`` is read as main/callerid.c ast_callerid_parse (quotes,
  backslash escapes, the last ``<``) and a shrinkable number shrunk; ``continue`` on an ARI-created
  channel hangs it up after StasisEnd
  (ChannelDestroyed cause 0); a created channel DELETEd before its Stasis entry gives
  ChannelHangupRequest 32 soft, ChannelHangupRequest 16/603, ChannelDestroyed 16/603 (no Stasis events);
  StasisStart/StasisEnd only reach the owning app (subscribeAll
  observers don't get them); error texts of untraced cases come from res/ari where known, else
  ``Missing required parameter: <name>``.
- Media lengths are modelled (``sound:hello-world`` 1.4 s, other sounds ``default_sound_duration``,
  ``digits:`` 0.775 s/digit, ``tone:`` until stopped, ``recording:`` fails); playback control is a no-op.
- Timestamps and uniqueids follow ``epoch + clock.now()``, so they run at the clock's speed.
- Not implemented (404 ``Resource not found``): snoop, record, externalMedia, redirect, move,
  channel ``variables``, recordings/sounds/deviceStates/mailboxes, asterisk config/modules/logging.
  Dead phones never become Unreachable (no qualify).
"""

from controller.sim.callers import Caller
from controller.sim.dialplan import DialplanEntry
from controller.sim.errors import AriError
from controller.sim.phones import DND, Answer, Busy, Dead, Decline, Invite, NoAnswer, Phone, Reject
from controller.sim.records import Interval, MediaSegment
from controller.sim.server import SimAsterisk
from controller.sim.traffic import CallSpec, TrafficGenerator, exponential, fixed, uniform

__all__ = [
    "DND",
    "Answer",
    "AriError",
    "Busy",
    "CallSpec",
    "Caller",
    "Dead",
    "Decline",
    "DialplanEntry",
    "Interval",
    "Invite",
    "MediaSegment",
    "NoAnswer",
    "Phone",
    "Reject",
    "SimAsterisk",
    "TrafficGenerator",
    "exponential",
    "fixed",
    "uniform",
]
