"""Kernel-stamped SIP packets for the load figures: frame and SIP parsing, first-stamp rules,
restamping the phones' events, and a live capture of two harness phones over loopback."""

import socket
import struct

import pytest

from controller.harness.capture import (
    CaptureUnavailable,
    PacketStamps,
    SipCapture,
    SipPacket,
    interface_towards,
    parse_frame,
    parse_sip,
)
from controller.harness.load import Placed, restamp, summarize
from controller.harness.ua import Behaviour, HarnessError, local_address_towards, split_pbx

INVITE = b"INVITE sip:103@127.0.0.1 SIP/2.0\r\nCall-ID: abc@x\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\n"
DECLINE = b"SIP/2.0 603 Decline\r\ni: abc@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"


def ipv4_frame(payload: bytes, sport: int, dport: int, *, proto: int = 17, frag: int = 0) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 1, frag, 64, proto, 0,
                     b"\x7f\0\0\1", b"\x7f\0\0\1")  # fmt: skip
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return b"\0" * 12 + b"\x08\x00" + ip + udp + payload


def ipv6_frame(payload: bytes, sport: int, dport: int) -> bytes:
    ip = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(payload), 17, 64, b"\0" * 15 + b"\1", b"\0" * 15 + b"\1")
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return b"\0" * 12 + b"\x86\xdd" + ip + udp + payload


def test_parse_frame_keeps_udp_of_the_pbx_port_and_tells_the_direction():
    assert parse_frame(ipv4_frame(INVITE, 40000, 5060), 5060) == (INVITE, False)
    assert parse_frame(ipv4_frame(DECLINE, 5060, 40000), 5060) == (DECLINE, True)
    assert parse_frame(ipv6_frame(INVITE, 5060, 40000), 5060) == (INVITE, True)
    assert parse_frame(ipv4_frame(INVITE, 40000, 5061), 5060) is None  # another port (RTP, ...)
    assert parse_frame(ipv4_frame(INVITE, 40000, 5060, proto=6), 5060) is None  # TCP
    assert parse_frame(ipv4_frame(INVITE, 40000, 5060, frag=0x2000), 5060) is None  # a fragment
    assert parse_frame(b"\0" * 10, 5060) is None


def test_parse_sip_reads_code_call_id_and_cseq_method_compact_or_not():
    assert parse_sip(INVITE) == (0, "abc@x", "INVITE")
    assert parse_sip(DECLINE) == (603, "abc@x", "INVITE")
    assert parse_sip(b"BYE sip:a@b SIP/2.0\r\ncall-id: q\r\ncseq: 7 bye\r\n\r\n") == (0, "q", "BYE")
    assert parse_sip(b"\r\n\r\n") is None  # keep-alive
    assert parse_sip(b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n") is None  # no Call-ID
    assert parse_sip(b"\x80\x00junk rtp") is None


def test_stamps_keep_the_first_copy_per_direction():
    stamps = PacketStamps(
        [
            SipPacket(1.0, "c", "INVITE", 0, True),
            SipPacket(1.5, "c", "INVITE", 0, True),  # retransmission: not the INVITE's time
            SipPacket(2.0, "c", "INVITE", 200, False),
            SipPacket(3.0, "c", "INVITE", 200, True),  # the other way: a re-INVITE's answer
        ]
    )
    assert stamps.request("c", from_pbx=True) == 1.0
    assert stamps.response("c", 200, from_pbx=False) == 2.0
    assert stamps.response("c", 200, from_pbx=True) == 3.0
    assert stamps.request("c", from_pbx=False) is None and stamps.count == 4


def test_restamp_times_the_summary_by_packets_and_counts_what_it_could_not():
    placed = [Placed("c1", "100")]
    callers = [
        {"ev": "invite_sent", "t": 10.000, "call": "c1"},
        {"ev": "state", "t": 10.001, "call": "c1", "state": "CALLING", "sip_call_id": "C1"},
        {"ev": "state", "t": 10.600, "call": "c1", "state": "CONFIRMED", "sip_call_id": "C1"},
        {"ev": "state", "t": 12.000, "call": "c1", "state": "DISCONNECTED", "by": "far end"},
    ]
    agents = [
        {"ev": "incoming", "t": 10.010, "call": "a#1", "number": "100", "sip_call_id": "A1"},
        {"ev": "sent", "t": 10.200, "call": "a#1", "code": 603},
        {"ev": "incoming", "t": 10.210, "call": "b#2", "number": "100", "sip_call_id": "B2"},
        {"ev": "sent", "t": 10.500, "call": "b#2", "code": 180},  # no packet captured for it
        {"ev": "sent", "t": 10.510, "call": "b#2", "code": 200},
        {"ev": "state", "t": 10.520, "call": "b#2", "state": "CONFIRMED", "sip_call_id": "B2"},
    ]
    stamps = PacketStamps(
        [
            SipPacket(9.9990, "C1", "INVITE", 0, False),
            SipPacket(10.0040, "A1", "INVITE", 0, True),
            SipPacket(10.1990, "A1", "INVITE", 603, False),
            SipPacket(10.2015, "B2", "INVITE", 0, True),
            SipPacket(10.5080, "B2", "INVITE", 200, False),
            SipPacket(10.5100, "C1", "INVITE", 200, True),
        ]
    )
    c2, a2, counts = restamp(callers, agents, stamps)
    assert counts == {"stamped": 6, "unmatched": 1}
    assert c2[0]["t"] == 9.999 and c2[0]["phone_t"] == 10.0 and callers[0]["t"] == 10.0  # a copy
    p = summarize(placed, c2, a2, duration=1.0)["percentiles_ms"]
    assert p["invite_to_agent"]["p50"] == pytest.approx(5.0)  # 9.9990 -> 10.0040
    assert p["refusal_to_next"]["p50"] == pytest.approx(2.5)  # 10.1990 -> 10.2015
    assert p["answer_to_connected"]["p50"] == pytest.approx(2.0)  # 10.5080 -> 10.5100


def test_pbx_addresses_are_split_or_refused_clearly():
    assert split_pbx("127.0.0.1:5070") == ("127.0.0.1", 5070)
    assert split_pbx("[::1]:5060") == ("::1", 5060) and split_pbx("::1") == ("::1", 5060)
    assert split_pbx("pbx.example.com") == ("pbx.example.com", 5060)
    with pytest.raises(HarnessError, match="--pbx wants host:port"):
        split_pbx("pbx:sip")


def test_local_address_and_interface_for_a_pbx_on_this_machine():
    assert local_address_towards("127.0.0.1:5060") == "127.0.0.1"
    assert interface_towards("127.0.0.1") == "lo" and interface_towards("localhost") == "lo"
    assert interface_towards("192.0.2.10") is None  # another machine: every interface


def _may_capture() -> bool:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()
    except (OSError, AttributeError):
        return False
    return True


def test_capture_without_the_privilege_says_what_it_needs(monkeypatch):
    def refuse(*_a, **_k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(socket, "socket", refuse)
    with pytest.raises(CaptureUnavailable, match="CAP_NET_RAW"):
        SipCapture(5060, "lo").start()


@pytest.mark.skipif(not _may_capture(), reason="needs CAP_NET_RAW (CI runs as root)")
async def test_live_capture_stamps_each_packet_once_before_the_phone_sees_it(phones):
    """A caller phone calls a declining agent phone directly; the agent's port plays the PBX."""
    agents, callers = phones
    await agents.add_agent("a1", Behaviour("decline", ring=0.05))
    capture = SipCapture(agents.port, "lo")
    capture.start()
    try:
        call = callers.call("cust", f"sip:a1@127.0.0.1:{agents.port}")
        end = await callers.ended(call)
        incoming = await agents.incoming("a1")
        await agents.ended(incoming["call"])
    finally:
        capture.stop()
    assert end["code"] == 603
    sip_id = incoming["sip_call_id"]
    mine = [p for p in capture.packets if p.call_id == sip_id]
    invites = [p for p in mine if p.method == "INVITE" and p.code == 0]
    declines = [p for p in mine if p.code == 603]
    assert len(invites) == 1 and not invites[0].from_pbx  # toward the "PBX" port, seen once
    assert len(declines) == 1 and declines[0].from_pbx
    sent = agents.record(incoming["call"]).first("sent", code=603)
    # Causal order, no tolerance: the kernel saw the INVITE before the phone reported it, and the
    # phone reports "sent" just before pjsua writes the 603 (worker.Call.respond).
    assert invites[0].t <= incoming["t"] and sent["t"] <= declines[0].t
    assert invites[0].t < declines[0].t
    assert capture.errors == 0
