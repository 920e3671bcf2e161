"""Hot-standby settings: a standby on SQLite, or a renewal too slow for the TTL, is a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller import cli
from controller.config import ConfigError, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acd.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("ACD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_standby_on_sqlite_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=None, ha=True)
    assert "ACD_HA: hot standby needs PostgreSQL" in str(info.value)


def test_renewal_must_fit_three_times_in_the_ttl() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            env_file=None, ha=True, database_url="postgresql+asyncpg://u@h/db", ha_ttl=2, ha_renew=1
        )
    expected = "ACD_HA_RENEW: must be a number of seconds > 0, at most a third of ACD_HA_TTL, got 1"
    assert expected in str(info.value)


def test_valid_ha_settings() -> None:
    s = load_settings(env_file=None, ha=True, database_url="postgresql+asyncpg://u@h/db")
    assert (s.ha_ttl, s.ha_renew) == (4.0, 0.5)
    # the issue: a standby takes over within 5 s by default. Worst case: the active dies right
    # after a renewal (TTL), the standby's next try comes up to one renew period later, then resync
    assert s.ha_ttl + s.ha_renew <= 4.5


def test_run_with_a_standby_on_sqlite_exits_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ACD_HA", "true")
    monkeypatch.setenv("ACD_ARI_PASSWORD", "secret-password")
    assert cli.main(["run", "--config", str(EXAMPLE)]) == 2
    assert "hot standby needs PostgreSQL" in capsys.readouterr().err
