"""Kernel timestamps of the SIP packets a load run exchanges with the PBX.

Why: a phone stamps an INVITE after pjsip has parsed it and Python has run, and a 603 just
after pjsip has sent it; with dozens of phone processes on the PBX's own machine those stamps
carry the phones' scheduling too, for both targets alike. The kernel stamps each packet as it
crosses the interface: what a tap beside the PBX would see. So the load test times the PBX
(and the controller), not the phones, when it may open a packet socket: Linux, CAP_NET_RAW
(root). Without it the phones' stamps are used and the report says so.

Only SIP over UDP to or from the PBX's port is read (a kernel filter drops RTP and the rest).
:func:`parse_frame` and :func:`parse_sip` are pure, so they are tested without privileges.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

ETH_P_ALL = 0x0003
ARPHRD_LOOPBACK = 772
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
RCVBUF = 8 << 20  # bytes: a burst of a few thousand SIP packets while the reader thread waits


class CaptureUnavailable(RuntimeError):
    """The packet socket cannot be opened here (not Linux, or no CAP_NET_RAW)."""


@dataclass(frozen=True, slots=True)
class SipPacket:
    """One SIP message as seen on the wire: when, which dialog, what, and which way."""

    t: float  # unix time from the kernel (CLOCK_REALTIME, as time.time())
    call_id: str
    method: str  # CSeq method (a response's too)
    code: int  # 0 for a request
    from_pbx: bool


def parse_frame(frame: bytes, port: int) -> tuple[bytes, bool] | None:
    """An Ethernet frame (loopback frames have the same 14-byte header) -> (UDP payload,
    sent by the PBX) when it is UDP to or from ``port``; None otherwise (fragments too)."""
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0800:
        if len(frame) < 34 or frame[23] != 17:
            return None
        if int.from_bytes(frame[20:22], "big") & 0x3FFF:  # MF flag or an offset: a fragment
            return None
        udp = 14 + (frame[14] & 0x0F) * 4
    elif ethertype == 0x86DD:
        if len(frame) < 62 or frame[20] != 17:  # next header UDP, no extension headers
            return None
        udp = 54
    else:
        return None
    if len(frame) < udp + 8:
        return None
    src, dst = struct.unpack_from("!HH", frame, udp)
    if port not in (src, dst):
        return None
    return frame[udp + 8 :], src == port


def parse_sip(payload: bytes) -> tuple[int, str, str] | None:
    """(status code or 0 for a request, Call-ID, CSeq method) of a SIP message; None if it is not one."""
    head = payload.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    first = lines[0]
    if first.startswith(b"SIP/2.0 "):
        try:
            code = int(first[8:11])
        except ValueError:
            return None
    elif first.endswith(b" SIP/2.0") and b" " in first:
        code = 0
    else:
        return None  # keep-alive CRLFs, STUN, anything else
    call_id = method = ""
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name in (b"call-id", b"i") and not call_id:
            call_id = value.strip().decode("latin-1")
        elif name == b"cseq" and not method:
            parts = value.split()
            method = parts[1].decode("latin-1").upper() if len(parts) == 2 else ""
    if not call_id or not method:
        return None
    return code, call_id, method


class PacketStamps:
    """The first time each (dialog, CSeq method, code, direction) was seen: retransmissions and
    a later copy of the same response do not move a stamp."""

    def __init__(self, packets: Iterable[SipPacket] = ()) -> None:
        self._first: dict[tuple[str, str, int, bool], float] = {}
        self.count = 0
        for p in packets:
            self.add(p)

    def add(self, p: SipPacket) -> None:
        self.count += 1
        self._first.setdefault((p.call_id, p.method, p.code, p.from_pbx), p.t)

    def request(self, call_id: str, method: str = "INVITE", *, from_pbx: bool) -> float | None:
        return self._first.get((call_id, method, 0, from_pbx))

    def response(self, call_id: str, code: int, method: str = "INVITE", *, from_pbx: bool) -> float | None:
        return self._first.get((call_id, method, code, from_pbx))


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


def udp_port_filter(port: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF for ``udp port PORT`` on Ethernet framing (what ``tcpdump -dd`` prints), so the
    kernel passes only SIP to the socket and RTP never wakes the reader."""
    return [
        (0x28, 0, 0, 0x0000000C),
        (0x15, 0, 6, 0x000086DD),
        (0x30, 0, 0, 0x00000014),
        (0x15, 0, 15, 0x00000011),
        (0x28, 0, 0, 0x00000036),
        (0x15, 12, 0, port),
        (0x28, 0, 0, 0x00000038),
        (0x15, 10, 11, port),
        (0x15, 0, 10, 0x00000800),
        (0x30, 0, 0, 0x00000017),
        (0x15, 0, 8, 0x00000011),
        (0x28, 0, 0, 0x00000014),
        (0x45, 6, 0, 0x00001FFF),
        (0xB1, 0, 0, 0x0000000E),
        (0x48, 0, 0, 0x0000000E),
        (0x15, 2, 0, port),
        (0x48, 0, 0, 0x00000010),
        (0x15, 0, 1, port),
        (0x6, 0, 0, 0x00040000),
        (0x6, 0, 0, 0x00000000),
    ]


def interface_towards(host: str) -> str | None:
    """``lo`` when the PBX is this machine's loopback (each packet is then read once, not twice);
    None (every interface) otherwise."""
    try:
        addr = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0]
    except OSError:
        return None
    return "lo" if addr.startswith("127.") or addr == "::1" else None


class SipCapture:
    """SIP/UDP packets of the PBX's port, read by a thread from an AF_PACKET socket."""

    def __init__(self, port: int, interface: str | None = None) -> None:
        self.port = port
        self.interface = interface
        self.packets: list[SipPacket] = []
        self.errors = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._filter: ctypes.Array[_SockFilter] | None = None  # kept alive while attached

    def start(self) -> None:
        """Open the socket (raises :class:`CaptureUnavailable` with the reason) and start reading."""
        if not hasattr(socket, "AF_PACKET"):
            raise CaptureUnavailable("packet capture needs Linux (AF_PACKET)")
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise CaptureUnavailable(
                "packet capture needs CAP_NET_RAW (run as root, or "
                "setcap cap_net_raw+ep on the Python binary)"
            ) from None
        except OSError as exc:
            raise CaptureUnavailable(f"packet socket: {exc}") from None
        try:
            prog = udp_port_filter(self.port)
            self._filter = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
            fprog = struct.pack("HL", len(prog), ctypes.addressof(self._filter))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            if self.interface:
                sock.bind((self.interface, ETH_P_ALL))
            sock.settimeout(0.2)
        except OSError as exc:
            sock.close()
            raise CaptureUnavailable(f"packet socket setup: {exc}") from None
        self._sock = sock
        self._thread = threading.Thread(target=self._read, name="sip-capture", daemon=True)
        self._thread.start()

    def mark(self) -> int:
        return len(self.packets)

    def stamps(self, since: int = 0) -> PacketStamps:
        return PacketStamps(self.packets[since:])

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        anc = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                frame, ancdata, _flags, addr = sock.recvmsg(65535, anc)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                self.errors += 1
                time.sleep(0.01)
                continue
            # On loopback a packet passes the tap twice (as sent, then as received): keep one.
            if addr[3] == ARPHRD_LOOPBACK and addr[2] == PACKET_OUTGOING:
                continue
            t = None
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack_from("qq", data)
                    t = sec + nsec / 1e9
            udp = parse_frame(frame, self.port)
            if udp is None:
                continue
            sip = parse_sip(udp[0])
            if sip is None:
                continue
            code, call_id, method = sip
            self.packets.append(SipPacket(t if t is not None else time.time(), call_id, method, code, udp[1]))
