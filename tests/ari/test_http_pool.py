"""The keep-alive pool behind ARI's REST requests, against a raw asyncio HTTP server.

What it promises: the request's bytes leave in the call that makes it (no loop turn), a
connection is reused only after a complete keep-alive answer, and every broken answer
(closed early, not HTTP, too slow) is an error and never a reused, out-of-step connection.
"""

import asyncio

import pytest

from controller.ari.http import HttpPool, HttpProtocolError, _Connection


class Server:
    """Answers each request with the next scripted reply (bytes, or a callable(transport))."""

    def __init__(self) -> None:
        self.replies: list = []
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> "Server":
        outer = self

        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                outer.connections += 1
                self.t, self.buf = transport, b""

            def data_received(self, data):
                self.buf += data
                while b"\r\n\r\n" in self.buf:
                    head, _, rest = self.buf.partition(b"\r\n\r\n")
                    n = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            n = int(line.split(b":")[1])
                    if len(rest) < n:
                        return
                    outer.requests.append(head + b"\r\n\r\n" + rest[:n])
                    self.buf = rest[n:]
                    reply = outer.replies.pop(0) if outer.replies else ok(b"{}")
                    if callable(reply):
                        reply(self.t)
                    elif reply is not None:
                        self.t.write(reply)

        self.server = await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def ok(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status.encode() + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


HEAD = b"POST /ari/channels?endpoint=PJSIP%2Fa1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"


@pytest.fixture
async def server():
    s = await Server().start()
    yield s
    await s.stop()


async def test_sequential_requests_share_one_connection(server):
    pool = HttpPool("127.0.0.1", server.port)
    server.replies = [ok(b'{"a":1}'), ok(b"", "204 No Content"), ok(b"[]")]
    assert await pool.request(HEAD, b"{}", 5) == (200, b'{"a":1}')
    assert await pool.request(HEAD, b"{}", 5) == (204, b"")
    assert await pool.request(HEAD, b"{}", 5) == (200, b"[]")
    assert server.connections == 1 and pool.opened == 1
    assert server.requests[0] == HEAD + b"{}"
    await pool.close()


async def test_concurrent_requests_open_their_own_connections(server):
    pool = HttpPool("127.0.0.1", server.port)
    results = await asyncio.gather(*(pool.request(HEAD, b"{}", 5) for _ in range(3)))
    assert [r[0] for r in results] == [200, 200, 200] and server.connections == 3
    await pool.request(HEAD, b"{}", 5)
    assert server.connections == 3  # an idle one was reused
    await pool.close()


async def test_the_request_is_on_the_wire_before_the_first_wait(server):
    """With an idle connection, the bytes are written inside the call: no loop turn."""
    pool = HttpPool("127.0.0.1", server.port)
    await pool.request(HEAD, b"{}", 5)  # warm one connection
    written: list[bytes] = []
    conn = pool._idle[-1]
    real_write = conn.transport.write
    conn.transport.write = lambda data: (written.append(data), real_write(data))[1]
    coro = pool.request(HEAD, b"{}", 5)
    step = coro.send(None)  # run to the first suspension only
    assert written == [HEAD + b"{}"], "the request must be written before the coroutine first waits"
    assert isinstance(step, asyncio.Future)  # now it waits for the answer
    coro.close()
    await pool.close()


async def test_connection_close_is_honoured(server):
    pool = HttpPool("127.0.0.1", server.port)
    server.replies = [ok(b"{}", extra=b"Connection: close\r\n"), ok(b"{}")]
    await pool.request(HEAD, b"{}", 5)
    await pool.request(HEAD, b"{}", 5)
    assert server.connections == 2
    await pool.close()


async def test_chunked_and_split_answers_are_read_whole(server):
    pool = HttpPool("127.0.0.1", server.port)

    def in_pieces(t):
        t.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a")
        asyncio.get_running_loop().call_later(0.02, t.write, b"\r\n4\r\n\":1}\r\n0\r\n\r\n")

    server.replies = [in_pieces, ok(b"{}")]
    assert await pool.request(HEAD, b"{}", 5) == (200, b'{"a":1}')
    assert await pool.request(HEAD, b"{}", 5) == (200, b"{}")
    assert server.connections == 1  # a complete chunked answer keeps the connection
    await pool.close()


async def test_interim_100_answer_is_skipped(server):
    pool = HttpPool("127.0.0.1", server.port)
    server.replies = [b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}")]
    assert await pool.request(HEAD, b"{}", 5) == (200, b"{}")
    await pool.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            lambda t: (t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"), t.close()),
            HttpProtocolError,
        ),
        (lambda t: t.close(), ConnectionResetError),
        (lambda t: t.write(b"SSH-2.0-OpenSSH\r\n\r\n"), HttpProtocolError),
        (lambda t: t.write(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), HttpProtocolError),
    ],
    ids=["closed-in-body", "closed-before-answer", "not-http", "bad-length"],
)
async def test_broken_answers_are_errors_and_the_connection_is_not_reused(server, reply, error):
    pool = HttpPool("127.0.0.1", server.port)
    server.replies = [reply, ok(b"{}")]
    with pytest.raises(error):
        await pool.request(HEAD, b"{}", 5)
    assert await pool.request(HEAD, b"{}", 5) == (200, b"{}")
    assert server.connections == 2
    await pool.close()


async def test_a_slow_answer_times_out_and_its_connection_is_dropped(server):
    pool = HttpPool("127.0.0.1", server.port)
    late: list = []
    server.replies = [lambda t: late.append(t), ok(b'{"second":1}')]
    with pytest.raises(TimeoutError):
        await pool.request(HEAD, b"{}", 0.05)
    late[0].write(ok(b'{"first":1}'))  # the late answer must not be read as the next one's
    assert await pool.request(HEAD, b"{}", 5) == (200, b'{"second":1}')
    assert server.connections == 2
    await pool.close()


async def test_idle_connections_are_not_reused_past_the_idle_timeout(server):
    pool = HttpPool("127.0.0.1", server.port, idle_timeout=0.05)
    await pool.request(HEAD, b"{}", 5)
    await asyncio.sleep(0.1)
    await pool.request(HEAD, b"{}", 5)
    assert server.connections == 2
    await pool.close()


async def test_before_write_can_stop_the_request(server):
    pool = HttpPool("127.0.0.1", server.port)

    def fenced():
        raise RuntimeError("fenced")

    with pytest.raises(RuntimeError, match="fenced"):
        await pool.request(HEAD, b"{}", 5, before_write=fenced)
    await asyncio.sleep(0.05)
    assert server.requests == []  # nothing went out
    await pool.close()


async def test_refused_connection_is_an_oserror():
    pool = HttpPool("127.0.0.1", 1)
    with pytest.raises(OSError):
        await pool.request(HEAD, b"{}", 5)
    await pool.close()


async def test_unasked_bytes_close_an_idle_connection(server):
    pool = HttpPool("127.0.0.1", server.port)
    await pool.request(HEAD, b"{}", 5)
    conn: _Connection = pool._idle[-1]
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\n")  # nobody asked: out of step
    assert conn.closed
    assert await pool.request(HEAD, b"{}", 5) == (200, b"{}")
    assert server.connections == 2
    await pool.close()


async def test_an_idle_connection_the_server_closed_is_replaced(server):
    """Asterisk closes an idle connection after http.conf's session_keep_alive (15 s by default;
    an admin may set it lower than our idle cap): the next request opens a new one."""
    pool = HttpPool("127.0.0.1", server.port)
    closing: list = []
    server.replies = [lambda t: (t.write(ok(b"{}")), closing.append(t))]
    assert await pool.request(HEAD, b"{}", 5) == (200, b"{}")
    closing[0].close()  # idle, then closed by the server (no Connection: close said)
    await asyncio.sleep(0.05)
    assert await pool.request(HEAD, b"{}", 5) == (200, b"{}")
    assert server.connections == 2
    await pool.close()
