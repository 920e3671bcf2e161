"""Hostile or careless input to the controller's HTTP API: a clear 4xx, never a 500 or a traceback."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import pytest

from controller.acd import events as ev
from controller.acd.engine import Presence
from controller.logs import MalformedRequestFilter
from tests.api.conftest import ALICE_TOKEN
from tests.stack import ADMIN


async def raw_http(stack, request: bytes) -> bytes:
    """Send bytes as they are (no client library cleans them up); the whole answer."""
    url = urlsplit(stack.services.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


def errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize(
    "name", ["%1b%5b31mRED%1b%5b0m%00.js", "panel%00.js", "%08%08.css", ".hidden.js", "..%2fapi.js"]
)
async def test_panel_file_names_with_control_characters_are_404(stack, caplog, name) -> None:
    answer = await raw_http(
        stack, f"GET /panel/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]
    assert errors(caplog) == []


@pytest.mark.parametrize("reason", ["\x1b[31mRED\x1b[0m", "nul\x00", "back\bspace", "line\nbreak", "c1\x9b"])
async def test_pause_reason_with_control_characters_is_400(stack, reason) -> None:
    status, body, _ = await stack.request("POST", "/api/agents/alice/pause", json={"reason": reason})
    assert (status, body["message"]) == (400, "reason: must not contain control characters")
    assert stack.controller.engine.agents["alice"].presence is Presence.AVAILABLE


@pytest.mark.parametrize(
    "path", ["/api/agents/alice/pause", "/api/agents/alice/login", "/api/agents/alice/ready"]
)
async def test_deeply_nested_json_is_400_and_counted(stack, path) -> None:
    deep = b"[" * 30_000 + b"]" * 30_000  # under the 64 KiB body limit, past Python's stack
    headers = {"Content-Type": "application/json"}
    status, body, _ = await stack.request("POST", path, data=deep, headers=headers)
    assert (status, body["error"]) == (400, "bad_request")
    status, text, _ = await stack.request("GET", "/metrics")
    assert 'acd_api_rejected_total{error="bad_request"} 1.0' in text


async def test_405_names_the_allowed_methods(stack) -> None:
    status, body, headers = await stack.request("DELETE", "/api/calls")
    assert (status, body["error"]) == (405, "method_not_allowed")
    assert "GET" in headers["Allow"]
    status, _, headers = await stack.request("PUT", "/api/agents/alice/pause")
    assert status == 405 and headers["Allow"] == "POST"


async def test_an_empty_time_window_is_an_empty_page(stack) -> None:
    status, body, _ = await stack.request("GET", "/api/calls?since=2026-01-02&until=2026-01-01")
    assert status == 200 and body["calls"] == []


@pytest.fixture
def fresh_malformed_filter():
    """A filter of its own (the process-wide one may have just spoken) with a clock we move."""
    logger = logging.getLogger("aiohttp.server")
    old = [f for f in logger.filters if isinstance(f, MalformedRequestFilter)]
    for f in old:
        logger.removeFilter(f)
    now = [1000.0]
    mine = MalformedRequestFilter(interval=10.0, clock=lambda: now[0])
    logger.addFilter(mine)
    yield now
    logger.removeFilter(mine)
    for f in old:
        logger.addFilter(f)


async def test_malformed_http_requests_log_one_rate_limited_warning(
    stack, caplog, fresh_malformed_filter
) -> None:
    bad = b"GET /api/me HTTP/1.1\r\nHost: x\r\nX-Probe: \x00\r\n\r\n"
    caplog.set_level(logging.INFO)
    for _ in range(3):
        assert (await raw_http(stack, bad)).startswith(b"HTTP/1.0 400 ")
    fresh_malformed_filter[0] += 11  # later: the next one is logged again, with the count left out
    assert (await raw_http(stack, bad)).startswith(b"HTTP/1.0 400 ")
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in server] == [
        ("WARNING", "malformed HTTP request refused with 400", None)
    ] * 2
    assert [r.suppressed for r in server] == [0, 2]
    assert "header" in server[0].problem.lower()


async def test_http_actions_only_feed_engine_events(stack, monkeypatch) -> None:
    """The handlers change nothing themselves: what reaches the engine is an event, or nothing."""
    fed: list[ev.Event] = []
    monkeypatch.setattr(stack.controller.shell, "feed", fed.append)  # events go nowhere
    for action, body in (("pause", {"reason": "lunch"}), ("logout", None), ("login", None)):
        status, _, _ = await stack.request(
            "POST", f"/api/agents/alice/{action}", token=ALICE_TOKEN, json=body
        )
        assert status == 200
    by = "agent:alice"  # who asked travels with the event into the history
    expected = [ev.AgentPause("alice", "lunch", by), ev.AgentLogout("alice", by), ev.AgentLogin("alice", by)]
    assert fed == expected
    assert stack.controller.engine.agents["alice"].presence is Presence.AVAILABLE  # untouched


async def test_admin_and_agent_both_get_404_for_unknown_offers(stack) -> None:
    for token in (ADMIN, ALICE_TOKEN):
        status, body, _ = await stack.request("POST", "/api/offers/nope-1/accept", token=token)
        assert (status, body["error"]) == (404, "not_found")


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_times_at_the_edge_of_the_calendar_are_answered(stack, since) -> None:
    for path in ("/api/calls", "/api/queues"):
        status, body, _ = await stack.request("GET", f"{path}?since={since.replace('+', '%2B')}")
        assert status == 200, body
