"""Keep-alive HTTP/1.1 connections for ARI's REST requests: a request is on the wire when the
call that makes it first waits.

Why not aiohttp's ClientSession here (it still carries the events websocket): on a real
Asterisk, measured from packet captures, a request took 0.3-0.7 ms from the call to its first
byte on the wire, because aiohttp (on Python 3.11) writes a body from a task of its own that
runs a loop turn later, behind whatever else is ready. On the path from an agent's 603 to the
next agent's INVITE that was a third of the controller's share. Here the request is serialized
and written before the first ``await`` when an idle connection is there (the common case), and
the per-request work is a few string joins.

Scope, on purpose: one host, HTTP/1.1, ``Content-Length`` or chunked responses, TLS through
``ssl``; no redirects, cookies, proxies or compression (ARI uses none). A connection is reused
only after a complete response that did not say ``Connection: close``, and never after
``idle_timeout`` (kept below Asterisk's ``session_keep_alive``, 15 s by default, so a reused
connection is not one Asterisk is closing). A request is never retried: an originate must not
ring a phone twice.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable

MAX_RESPONSE = 64 << 20  # bytes: a larger ARI answer is a broken peer
IDLE_TIMEOUT = 10.0  # s: below Asterisk's default session_keep_alive (15 s)
MAX_CONNECTIONS = 32  # http.conf session_limit defaults to 100, for every client together


class HttpProtocolError(ConnectionError):
    """The peer's answer is not HTTP/1.x as expected."""


class _Connection(asyncio.Protocol):
    """One TCP connection; at most one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_used = time.monotonic()
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self._head_only = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the stream is out of step
            return
        self._buf += data
        if len(self._buf) > MAX_RESPONSE:
            self._fail(HttpProtocolError(f"response larger than {MAX_RESPONSE} bytes"))
            return
        self._settle(eof=False)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._settle(eof=True)

    def _settle(self, eof: bool) -> None:
        """Answer the waiter once the response is complete or broken (or, at eof, cut short)."""
        assert self._waiter is not None
        try:
            done = self._parse(eof)
        except HttpProtocolError as exc:
            self._fail(exc)
            return
        if done is not None:
            self._waiter.set_result(done)
        elif eof:
            self._waiter.set_exception(
                ConnectionResetError("the server closed the connection before a complete answer")
            )

    # -- ours
    def usable(self, now: float, idle_timeout: float) -> bool:
        return (
            not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.last_used <= idle_timeout
        )

    def send(self, data: bytes, head_only: bool) -> asyncio.Future[tuple[int, bytes, bool]]:
        assert self.transport is not None and (self._waiter is None or self._waiter.done())
        self._buf.clear()
        self._head_only = head_only
        self._waiter = self._loop.create_future()
        self.transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def _parse(self, eof: bool) -> tuple[int, bytes, bool] | None:
        """(status, body, keep-alive) once the response is complete; None while it is not."""
        buf = self._buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if eof and buf:
                    raise HttpProtocolError("connection closed inside the response headers")
                return None
            lines = bytes(buf[:end]).split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
            status = int(parts[1])
            if 100 <= status < 200:  # an interim answer: the real one follows
                del buf[: end + 4]
                continue
            break
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get(b"connection", b"").lower() != b"close" and parts[0] != b"HTTP/1.0"
        body_start = end + 4
        if self._head_only or status in (204, 304):
            return status, b"", keep_alive
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = self._dechunk(body_start)
            return None if body is None else (status, body, keep_alive)
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                raise HttpProtocolError(f"bad Content-Length {length[:40]!r}")
            n = int(length)
            if len(buf) - body_start < n:
                if eof:
                    raise HttpProtocolError("connection closed inside the response body")
                return None
            return status, bytes(buf[body_start : body_start + n]), keep_alive
        # neither: the body runs to the end of the connection
        return (status, bytes(buf[body_start:]), False) if eof else None

    def _dechunk(self, pos: int) -> bytes | None:
        buf, out = self._buf, bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                return bytes(out) if buf.find(b"\r\n\r\n", eol) >= 0 else None  # after any trailers
            start = eol + 2
            if len(buf) < start + size + 2:
                return None
            out += buf[start : start + size]
            pos = start + size + 2


class HttpPool:
    """Keep-alive connections to one ``host:port``; requests go out in the call that makes them."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._all: set[_Connection] = set()
        self.opened = 0  # connections made so far (tests, stats)
        self._closed = False

    async def request(
        self,
        head: bytes,
        body: bytes,
        timeout: float,
        *,
        head_only: bool = False,
        before_write: Callable[[], None] | None = None,
    ) -> tuple[int, bytes]:
        """Send one request (``head`` = request line and headers, CRLF-terminated) and return
        (status, body). ``before_write`` runs right before the bytes go out (it may raise to stop
        them). Raises TimeoutError, ConnectionError (HttpProtocolError included) or OSError."""
        if self._closed:
            raise ConnectionError("the HTTP pool is closed")
        conn: _Connection | None = None
        async with asyncio.timeout(timeout):
            await self._slots.acquire()  # no suspension while a slot is free
            try:
                conn = self._take_idle()
                if conn is None:
                    conn = await self._open()
                if before_write is not None:
                    before_write()
                status, data, keep_alive = await conn.send(head + body, head_only)
            except BaseException:
                if conn is not None:
                    conn.close()  # an answer may still come: this connection is out of step
                    self._all.discard(conn)
                self._slots.release()
                raise
        if keep_alive and not conn.closed:
            conn.last_used = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
            self._all.discard(conn)
        self._slots.release()
        return status, data

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be timed out
            if conn.usable(now, self.idle_timeout):
                return conn
            conn.close()
            self._all.discard(conn)
        return None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Connection(loop),
            self.host,
            self.port,
            ssl=self.ssl_context,
            server_hostname=self.host if self.ssl_context is not None else None,
        )
        self.opened += 1
        self._all.add(conn)
        return conn

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost
