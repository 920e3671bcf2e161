"""Tokens: admin in constant time, agent tokens as SHA-256 from the queue file, never the secret."""

from __future__ import annotations

import pytest

from controller.api.auth import Auth, AuthError, hash_token
from controller.config import ConfigError, load_agent_tokens, load_setup

QUEUE_FILE = """
[queues.support]
[agents.alice]
endpoint = "PJSIP/agent1"
queues = ["support"]
token_sha256 = "{digest}"
[agents.bob]
endpoint = "PJSIP/agent2"
queues = ["support"]
"""


def test_admin_and_agent_tokens():
    auth = Auth("admin-secret", {"alice": hash_token("alice-tok"), "bob": hash_token("bob-tok")})
    assert auth.identify("Bearer admin-secret").is_admin
    alice = auth.identify("bearer alice-tok")
    assert (alice.role, alice.agent_id) == ("agent", "alice")
    assert alice.may_act_for("alice") and not alice.may_act_for("bob")
    for header in (
        None,
        "",
        "Bearer",
        "Basic admin-secret",
        "Bearer admin-secre",
        "Bearer " + hash_token("alice-tok"),
    ):
        with pytest.raises(AuthError) as info:
            auth.identify(header)
        assert info.value.status == 401


def test_api_disabled_without_any_token():
    with pytest.raises(AuthError, match="set ACD_ADMIN_TOKEN"):
        Auth("").identify("Bearer anything")


def test_queue_file_holds_only_the_hash(tmp_path):
    path = tmp_path / "acd.toml"
    path.write_text(QUEUE_FILE.format(digest=hash_token("alice-tok").upper()))
    load_setup(path)
    assert load_agent_tokens(path) == {"alice": hash_token("alice-tok")}
    path.write_text(QUEUE_FILE.format(digest="alice-tok"))
    with pytest.raises(ConfigError) as info:
        load_setup(path)
    assert "agents.alice.token_sha256: must be 64 hex digits, the SHA-256 of the agent's API token" in str(
        info.value
    )
