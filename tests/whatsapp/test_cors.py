"""CORS for the browser panel (another origin) and the stream's Origin check."""

from __future__ import annotations

import aiohttp
import pytest

from controller.config import ConfigError, load_settings
from controller.whatsapp.cors import parse_origins
from tests.whatsapp.conftest import ADMIN, TOKENS

PANEL = "http://127.0.0.1:8080"
EVIL = "https://evil.example"


def preflight(origin: str, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }


async def test_preflight_from_the_panel_is_answered(make_sidecar) -> None:
    s = await make_sidecar(cors_origins=[PANEL, "https://panel.example.com"])
    for path, method in (("/api/conversations", "GET"), ("/api/conversations/1/messages", "POST")):
        resp = await s.client.options(path, headers=preflight(PANEL, method))
        assert resp.status == 204, await resp.text()
        assert resp.headers["Access-Control-Allow-Origin"] == PANEL
        assert {h.strip() for h in resp.headers["Access-Control-Allow-Headers"].split(",")} == {
            "Authorization",
            "Content-Type",
        }
        assert {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")} == {
            "GET",
            "POST",
            "OPTIONS",
        }
        assert int(resp.headers["Access-Control-Max-Age"]) > 0
        assert "Origin" in resp.headers["Vary"]
    other = await s.client.options("/api/templates", headers=preflight("https://panel.example.com"))
    assert other.headers["Access-Control-Allow-Origin"] == "https://panel.example.com"


async def test_preflight_from_another_origin_is_refused_and_counted(make_sidecar) -> None:
    s = await make_sidecar(cors_origins=[PANEL])
    for origin in (EVIL, "http://127.0.0.1:8081", PANEL + "/"):
        resp = await s.client.options("/api/conversations", headers=preflight(origin))
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert s.service.metrics.get("cors_refused", kind="preflight") == 3


async def test_real_responses_carry_the_origin_errors_included(make_sidecar) -> None:
    s = await make_sidecar(cors_origins=[PANEL])
    ok = await s.client.get(
        "/api/conversations", headers={"Origin": PANEL, "Authorization": f"Bearer {TOKENS['alice']}"}
    )
    assert ok.status == 200 and ok.headers["Access-Control-Allow-Origin"] == PANEL
    assert "Origin" in ok.headers["Vary"]
    denied = await s.client.get(
        "/api/conversations", headers={"Origin": PANEL, "Authorization": "Bearer nope"}
    )
    assert denied.status == 401 and denied.headers["Access-Control-Allow-Origin"] == PANEL
    assert (await denied.json()) == {"error": "invalid token"}  # readable by the panel
    missing = await s.client.get(
        "/api/conversations/999", headers={"Origin": PANEL, "Authorization": f"Bearer {ADMIN}"}
    )
    assert missing.status == 404 and missing.headers["Access-Control-Allow-Origin"] == PANEL
    assert "error" in await missing.json()
    foreign = await s.client.get(
        "/api/conversations", headers={"Origin": EVIL, "Authorization": f"Bearer {TOKENS['alice']}"}
    )
    assert foreign.status == 200 and "Access-Control-Allow-Origin" not in foreign.headers


async def test_unexpected_failure_is_json_with_the_origin(
    make_sidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await make_sidecar(cors_origins=[PANEL])

    async def boom(*_args, **_kw):
        raise RuntimeError("bug")

    monkeypatch.setattr(s.service.sender, "submit", boom)
    resp = await s.client.post(
        "/api/conversations/1/messages",
        json={"type": "text", "text": "oi"},
        headers={"Origin": PANEL, "Authorization": f"Bearer {TOKENS['alice']}"},
    )
    assert resp.status == 500 and resp.headers["Access-Control-Allow-Origin"] == PANEL
    assert "internal error" in (await resp.json())["error"]


async def test_without_cors_origins_nothing_is_allowed(make_sidecar) -> None:
    s = await make_sidecar()
    resp = await s.client.options("/api/conversations", headers=preflight(PANEL))
    assert resp.status == 405 and "Access-Control-Allow-Origin" not in resp.headers
    get = await s.client.get(
        "/api/conversations", headers={"Origin": PANEL, "Authorization": f"Bearer {ADMIN}"}
    )
    assert get.status == 200 and "Access-Control-Allow-Origin" not in get.headers


async def test_webhook_gets_no_cors(make_sidecar) -> None:
    s = await make_sidecar(cors_origins=[PANEL])
    resp = await s.post("webhook_status_sent.json", Origin=PANEL)
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    pre = await s.client.options("/webhooks/whatsapp", headers=preflight(PANEL, "POST"))
    assert "Access-Control-Allow-Origin" not in pre.headers


async def test_stream_refuses_foreign_browser_origins(make_sidecar) -> None:
    s = await make_sidecar(cors_origins=[PANEL])
    own = f"http://{s.client.server.host}:{s.client.server.port}"
    token = TOKENS["alice"]
    for path in ("/api/stream", "/api/stream/sse"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.client.ws_connect(f"/api/stream?token={token}", headers={"Origin": EVIL})
        assert info.value.status == 403
        if path.endswith("sse"):
            resp = await s.client.get(f"{path}?token={token}", headers={"Origin": EVIL})
            assert resp.status == 403
    assert s.service.metrics.get("cors_refused", kind="stream") == 3
    for headers in ({"Origin": PANEL}, {"Origin": own}, {}):  # the panel, the sidecar itself, not a browser
        ws = await s.client.ws_connect(f"/api/stream?token={token}", headers=headers)
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        await ws.close()
    sse = await s.client.get(f"/api/stream/sse?token={token}", headers={"Origin": PANEL})
    assert sse.status == 200 and sse.headers["Access-Control-Allow-Origin"] == PANEL
    sse.close()


def test_parse_origins() -> None:
    assert parse_origins(" http://127.0.0.1:8080/ , HTTPS://Panel.Example.com:443,http://[::1]:8080") == [
        "http://127.0.0.1:8080",
        "https://panel.example.com",
        "http://[::1]:8080",
    ]
    assert parse_origins("") == [] and parse_origins(["http://a", "http://a:80"]) == ["http://a"]
    for bad in ("*", "127.0.0.1:8080", "http://host/panel", "ftp://host", "http://host:99999"):
        with pytest.raises(ValueError):
            parse_origins(bad)


def test_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_SIDECAR_CORS_ORIGINS", "http://127.0.0.1:8080, https://panel.example.com/")
    assert (
        load_settings(env_file=None).sidecar_cors_origins == "http://127.0.0.1:8080,https://panel.example.com"
    )
    monkeypatch.setenv("ACD_SIDECAR_CORS_ORIGINS", "*")
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=None)
    assert "ACD_SIDECAR_CORS_ORIGINS: must be comma-separated exact origins such as" in str(info.value)
