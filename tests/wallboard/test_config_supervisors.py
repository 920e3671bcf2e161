"""``[supervisors.ID]`` in the queue file: validated at load, loaded hashed, used by the API's auth."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.api.auth import Auth, hash_token
from controller.config import ConfigError, load_setup, load_supervisors

BASE = """
[queues.sales]
[queues.support]

[agents.alice]
endpoint = "PJSIP/agent1"
queues = ["sales"]
token_sha256 = "{alice}"
"""


def write(tmp_path: Path, supervisors: str) -> Path:
    path = tmp_path / "acd.toml"
    path.write_text(BASE.format(alice=hash_token("alice-token")) + supervisors)
    return path


def test_supervisor_loads_with_its_queues_and_its_token_works(tmp_path):
    path = write(
        tmp_path,
        f'[supervisors.sam]\nname = "Sam"\ntoken_sha256 = "{hash_token("sam-token").upper()}"\n'
        'queues = ["sales"]\n',
    )
    load_setup(path)
    sups = load_supervisors(path)
    assert sups == {"sam": ("Sam", hash_token("sam-token"), frozenset({"sales"}))}
    auth = Auth("admin", {"alice": hash_token("alice-token")}, sups)
    who = auth.identify("Bearer sam-token")
    assert (who.role, who.supervisor_id, who.queues, who.label) == (
        "supervisor",
        "sam",
        frozenset({"sales"}),
        "supervisor:sam",
    )
    assert who.supervises(["sales", "x"]) and not who.supervises(["support"])
    assert not who.may_act_for("alice")  # agent routes check supervision separately
    assert auth.identify("Bearer alice-token").role == "agent"


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            'token_sha256 = "{alice}"\nqueues = ["sales"]',
            "supervisors.x.token_sha256: the same token as agent alice",
        ),
        ('queues = ["sales"]', "supervisors.x.token_sha256: must be 64 hex digits"),
        ('token_sha256 = "{sam}"\nqueues = ["salse"]', 'supervisors.x.queues[0]: unknown queue "salse"'),
        ('token_sha256 = "{sam}"\nqueues = []', "supervisors.x.queues: must be a non-empty list"),
        ('token_sha256 = "{sam}"\nqueues = ["sales"]\nqueue = "x"', "supervisors.x.queue: unknown"),
    ],
    ids=["token-of-an-agent", "no-token", "unknown-queue", "no-queues", "unknown-key"],
)
def test_bad_supervisor_is_refused_with_a_clear_line(tmp_path, table, problem):
    text = table.format(alice=hash_token("alice-token"), sam=hash_token("sam-token"))
    path = write(tmp_path, f"[supervisors.x]\n{text}\n")
    with pytest.raises(ConfigError) as err:
        load_setup(path)
    assert problem in str(err.value)


def test_two_supervisors_with_one_token_are_refused(tmp_path):
    digest = hash_token("shared")
    path = write(
        tmp_path,
        f'[supervisors.a]\ntoken_sha256 = "{digest}"\nqueues = ["sales"]\n'
        f'[supervisors.b]\ntoken_sha256 = "{digest}"\nqueues = ["support"]\n',
    )
    with pytest.raises(ConfigError) as err:
        load_setup(path)
    assert "supervisors.b.token_sha256: the same token as supervisor a" in str(err.value)
