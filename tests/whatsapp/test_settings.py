"""WhatsApp settings: defaults, validation lines, secrets kept out of repr and logs, README docs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.cli import main
from controller.config import ConfigError, load_settings
from controller.whatsapp.auth import AuthError, SidecarAuth, hash_token
from controller.whatsapp.service import WhatsAppConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith("ACD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


QUEUE_FILE = """
[queues.support]
[agents.alice]
endpoint = "PJSIP/agent1"
queues = ["support"]
token_sha256 = "{alice}"
[agents.bob]
endpoint = "PJSIP/agent2"
queues = ["support"]
token_sha256 = "{bob}"
[agents.carol]
endpoint = "PJSIP/agent3"
queues = ["support"]
"""


def write_queue_file(path: Path) -> Path:
    path.write_text(
        QUEUE_FILE.format(alice=hash_token("alice-secret-1"), bob=hash_token("bob-secret-22").upper())
    )
    return path


def test_defaults(tmp_path: Path) -> None:
    write_queue_file(tmp_path / "acd.toml")  # ./acd.toml, the default ACD_CONFIG
    s = load_settings(env_file=None)
    assert (s.sidecar_host, s.sidecar_port) == ("127.0.0.1", 8081)
    assert s.wa_graph_url == "https://graph.facebook.com/v24.0"
    config = WhatsAppConfig.from_settings(s)
    assert config.app_secret == "" and config.team == []
    assert set(config.agent_token_hashes) == {"alice", "bob"}  # carol has no token_sha256
    assert any("ACD_WA_APP_SECRET is not set" in p for p in config.problems())


def test_values_and_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    queue_file = write_queue_file(tmp_path / "agents.toml")
    monkeypatch.setenv("ACD_WA_APP_SECRET", "app-secret-xyz")
    monkeypatch.setenv("ACD_WA_ACCESS_TOKEN", "EAAG-access-xyz")
    monkeypatch.setenv("ACD_CONFIG", str(queue_file))
    monkeypatch.setenv("ACD_WA_TEAM", "alice, carol")
    monkeypatch.setenv("ACD_WA_GRAPH_URL", "http://127.0.0.1:9999/v24.0/")
    s = load_settings(env_file=None)
    for secret in ("app-secret-xyz", "EAAG-access-xyz"):
        assert secret not in repr(s) and secret in s.secret_values()
    config = WhatsAppConfig.from_settings(s)
    assert config.agent_token_hashes == {
        "alice": hash_token("alice-secret-1"),
        "bob": hash_token("bob-secret-22"),  # upper-case hex in the file, normalised
    }
    assert config.team == ["alice", "carol"] and config.graph_url == "http://127.0.0.1:9999/v24.0"
    assert any("ACD_WA_TEAM lists carol without a token_sha256" in p for p in config.problems())


def test_missing_or_invalid_queue_file_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="acd.toml: config file not found"):
        WhatsAppConfig.from_settings(load_settings(env_file=None))
    bad = tmp_path / "bad.toml"
    bad.write_text(QUEUE_FILE.format(alice="alice-secret-1", bob=hash_token("b")))
    with pytest.raises(ConfigError) as info:
        WhatsAppConfig.from_settings(load_settings(env_file=None, config=bad))
    assert "bad.toml: agents.alice.token_sha256: must be 64 hex digits" in str(info.value)
    assert "alice-secret-1" in str(info.value)  # the file holds a hash, so a value shown is no secret


@pytest.mark.parametrize(
    ("var", "value", "expect"),
    [
        ("ACD_SIDECAR_PORT", "0", "ACD_SIDECAR_PORT: must be a TCP port number 1-65535"),
        ("ACD_WA_GRAPH_URL", "graph.facebook.com", "ACD_WA_GRAPH_URL: must be an http:// or https:// URL"),
        ("ACD_WA_PHONE_NUMBER_ID", "+55 11", "ACD_WA_PHONE_NUMBER_ID: must be the WhatsApp phone number id"),
        (
            "ACD_AGENT_TOKENS",
            "alice=alice-secret-1",
            "ACD_AGENT_TOKENS: removed: give each agent a token_sha256",
        ),
    ],
)
def test_bad_values_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, expect: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=None)
    assert expect in str(info.value)
    assert "alice-secret-1" not in str(info.value)  # a token is never echoed


def test_removed_agent_tokens_in_dotenv_is_named(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("ACD_AGENT_TOKENS=alice=alice-secret-1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=env)
    assert str(info.value).count("ACD_AGENT_TOKENS") == 1  # one line, not also "unknown setting"
    assert "token_sha256 under [agents.ID] in the queue file" in str(info.value)


def test_sidecar_auth_uses_the_controllers_hashes_and_visibility() -> None:
    auth = SidecarAuth(
        "admin-token-1", {"alice": hash_token("alice-tok-1"), "bob": hash_token("bob-tok-22")}, ["alice"]
    )
    alice = auth.authenticate("alice-tok-1")
    assert alice is not None and alice.agent_id == "alice" and not alice.is_admin
    assert auth.identify("Bearer admin-token-1").is_admin
    assert auth.authenticate("nope") is None and auth.authenticate("") is None
    assert auth.authenticate(hash_token("alice-tok-1")) is None  # the digest itself is not a token
    with pytest.raises(AuthError) as info:
        auth.identify("Basic alice-tok-1")
    assert info.value.status == 401
    bob = auth.authenticate("bob-tok-22")
    assert bob is not None
    assert auth.can_see(alice, None) and not auth.can_see(bob, None)  # bob is not in the team
    assert auth.can_see(bob, "bob") and not auth.can_see(alice, "bob")
    assert SidecarAuth("", {"alice": hash_token("x" * 8)}).team == {"alice"}  # empty team = everyone


def test_config_hashes_plain_tokens_and_checks_hashes() -> None:
    config = WhatsAppConfig(agent_tokens={"alice": "alice-tok-1"}, agent_token_hashes={"bob": "AB" * 32})
    assert config.agent_token_hashes == {"bob": "ab" * 32, "alice": hash_token("alice-tok-1")}
    assert "alice-tok-1" not in repr(config)
    with pytest.raises(ValueError, match="agent bob: token hash must be 64 hex digits"):
        WhatsAppConfig(agent_token_hashes={"bob": "bob-token"})


def test_sidecar_command_reads_the_queue_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import controller.whatsapp.service as service

    queue_file = write_queue_file(tmp_path / "elsewhere.toml")
    seen: list[WhatsAppConfig] = []

    async def fake_run(config: WhatsAppConfig) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(service, "run_sidecar", fake_run)
    assert main(["sidecar", "--config", str(queue_file)]) == 0
    assert set(seen[0].agent_token_hashes) == {"alice", "bob"}
    monkeypatch.setenv("ACD_CONFIG", str(queue_file))
    assert main(["sidecar"]) == 0 and seen[1].agent_token_hashes == seen[0].agent_token_hashes
    assert main(["sidecar", "--config", str(tmp_path / "missing.toml")]) == 2
    assert len(seen) == 2


def test_readme_documents_the_sidecar() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## WhatsApp sidecar" in readme
    for word in ("acdctl sidecar", "acdctl db upgrade", "/webhooks/whatsapp", "/api/stream"):
        assert word in readme, word
