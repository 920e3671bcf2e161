"""WhatsApp settings: defaults, validation lines, secrets kept out of repr and logs, README docs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.config import ConfigError, load_settings
from controller.whatsapp.auth import TokenAuth, parse_agent_tokens
from controller.whatsapp.service import WhatsAppConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith("ACD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = load_settings(env_file=None)
    assert (s.sidecar_host, s.sidecar_port) == ("127.0.0.1", 8081)
    assert s.wa_graph_url == "https://graph.facebook.com/v24.0"
    config = WhatsAppConfig.from_settings(s)
    assert config.app_secret == "" and config.agent_tokens == {} and config.team == []
    assert any("ACD_WA_APP_SECRET is not set" in p for p in config.problems())


def test_values_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_WA_APP_SECRET", "app-secret-xyz")
    monkeypatch.setenv("ACD_WA_ACCESS_TOKEN", "EAAG-access-xyz")
    monkeypatch.setenv("ACD_AGENT_TOKENS", "alice=alice-secret-1, bob=bob-secret-22")
    monkeypatch.setenv("ACD_WA_TEAM", "alice")
    monkeypatch.setenv("ACD_WA_GRAPH_URL", "http://127.0.0.1:9999/v24.0/")
    s = load_settings(env_file=None)
    for secret in ("app-secret-xyz", "EAAG-access-xyz", "alice-secret-1"):
        assert secret not in repr(s) and secret in s.secret_values()
    config = WhatsAppConfig.from_settings(s)
    assert config.agent_tokens == {"alice": "alice-secret-1", "bob": "bob-secret-22"}
    assert config.team == ["alice"] and config.graph_url == "http://127.0.0.1:9999/v24.0"


@pytest.mark.parametrize(
    ("var", "value", "expect"),
    [
        ("ACD_SIDECAR_PORT", "0", "ACD_SIDECAR_PORT: must be a TCP port number 1-65535"),
        ("ACD_WA_GRAPH_URL", "graph.facebook.com", "ACD_WA_GRAPH_URL: must be an http:// or https:// URL"),
        ("ACD_WA_PHONE_NUMBER_ID", "+55 11", "ACD_WA_PHONE_NUMBER_ID: must be the WhatsApp phone number id"),
        ("ACD_AGENT_TOKENS", "alice=short", "ACD_AGENT_TOKENS: must be agent=token pairs"),
        ("ACD_AGENT_TOKENS", "alice", "ACD_AGENT_TOKENS: must be agent=token pairs"),
    ],
)
def test_bad_values_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, expect: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=None)
    assert expect in str(info.value)
    if var == "ACD_AGENT_TOKENS":
        assert "short" not in str(info.value)  # a token is never echoed


def test_token_auth_hashes_and_visibility() -> None:
    auth = TokenAuth("admin-token-1", parse_agent_tokens("alice=alice-tok-1,bob=bob-tok-22"), ["alice"])
    assert "alice-tok-1" not in repr(vars(auth))
    alice = auth.authenticate("alice-tok-1")
    assert alice is not None and alice.agent_id == "alice" and not alice.admin
    assert auth.authenticate("admin-token-1").admin
    assert auth.authenticate("nope") is None and auth.authenticate("") is None
    bob = auth.authenticate("bob-tok-22")
    assert auth.can_see(alice, None) and not auth.can_see(bob, None)  # bob is not in the team
    assert auth.can_see(bob, "bob") and not auth.can_see(alice, "bob")


def test_readme_documents_the_sidecar() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## WhatsApp sidecar" in readme
    for word in ("acdctl sidecar", "acdctl db upgrade", "/webhooks/whatsapp", "/api/stream"):
        assert word in readme, word
