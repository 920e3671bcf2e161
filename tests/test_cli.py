"""``acdctl``: exit codes and messages an admin sees; run/demo dispatch to controller.app."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from controller import cli
from controller.acd.setup import AcdSetup
from controller.config import Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "acd.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith("ACD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Stand-in for controller.app that records what the CLI hands over."""
    seen = types.SimpleNamespace(calls=[], result=0)
    module = types.ModuleType("controller.app")

    def run_controller(settings: Settings, setup: AcdSetup) -> int:
        seen.calls.append(("run", settings, setup))
        return seen.result

    def run_demo(args) -> int:
        seen.calls.append(("demo", args))
        return seen.result

    module.run_controller = run_controller  # type: ignore[attr-defined]
    module.run_demo = run_demo  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "controller.app", module)
    monkeypatch.setitem(sys.modules, "controller.demo", module)  # acdctl demo imports it directly
    import controller

    monkeypatch.setattr(controller, "app", module, raising=False)
    return seen


@pytest.fixture(autouse=True)
def _restore_logging():
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


# --------------------------------------------------------------------------- check-config


def test_check_config_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "--config", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "OK, 2 queue(s), 4 agent(s)" in out
    for word in (
        "support",
        "sales",
        "longest_idle",
        "acd-overflow,s,1",
        "alice",
        "PJSIP/agent4",
        "logged_out",
    ):
        assert word in out
    assert "ari_password  (not set" in out


def test_check_config_reads_acd_config(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ACD_CONFIG", str(EXAMPLE))
    monkeypatch.setenv("ACD_ARI_PASSWORD", "hunter22")
    assert cli.main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "ari_password  (set)" in out
    assert "hunter22" not in out


def test_check_config_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[queues.support]\nring_timeout = -3\n")
    assert cli.main(["check-config", "--config", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{bad}: queues.support.ring_timeout: must be a number of seconds > 0, got -3\n"


def test_check_config_missing_default_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "acd.toml: config file not found" in err
    assert "--config" in err and "ACD_CONFIG" in err


def test_check_config_bad_env(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ACD_HTTP_PORT", "abc")
    assert cli.main(["check-config", "--config", str(EXAMPLE)]) == 2
    assert "ACD_HTTP_PORT: must be a TCP port number 1-65535, got 'abc'" in capsys.readouterr().err


def test_check_config_prints_warnings(tmp_path: Path, capsys) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[queues.q]\n[queues.empty]\n[agents.a]\nendpoint = "PJSIP/a"\nqueues = ["q"]\n')
    assert cli.main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Warnings" in out and "queues.empty: no agent" in out


def test_subprocess_exit_codes(tmp_path: Path) -> None:
    """The installed console script, as an admin runs it."""
    script = Path(sys.executable).with_name("acdctl")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "controller.cli"]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ACD_")}
    run = {"capture_output": True, "text": True, "env": env, "cwd": tmp_path}
    ok = subprocess.run([*cmd, "check-config", "--config", str(EXAMPLE)], **run)
    assert ok.returncode == 0, ok.stderr
    assert "support" in ok.stdout and "sales" in ok.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text('[queues.support]\nstrategy = "fastest"\n')
    fail = subprocess.run([*cmd, "check-config", "--config", str(bad)], **run)
    assert fail.returncode == 2
    assert fail.stdout == ""
    assert "queues.support.strategy: must be one of" in fail.stderr
    assert "Traceback" not in fail.stderr


# --------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["demo", "--speed", "0"],
        ["demo", "--speed", "fast"],
        ["demo", "--duration", "-1"],
        ["demo", "--agents", "0"],
        ["demo", "--seed", "x"],
        ["run", "--log-level", "LOUD"],
        ["check-config", "--bogus"],
    ],
)
def test_argument_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert "usage: acdctl" in capsys.readouterr().err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "demo", "check-config"):
        assert command in out
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("acdctl ")


# --------------------------------------------------------------------------- run / demo dispatch


def test_run_dispatches_to_app(fake_app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_ARI_PASSWORD", "pw")
    fake_app.result = 0
    assert cli.main(["run", "--config", str(EXAMPLE), "--log-format", "json"]) == 0
    [(kind, settings, setup)] = fake_app.calls
    assert kind == "run"
    assert isinstance(settings, Settings) and isinstance(setup, AcdSetup)
    assert settings.config == EXAMPLE
    assert settings.log_format == "json"
    assert list(setup.queues) == ["support", "sales"]


def test_run_exit_code_is_the_apps(fake_app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_ARI_PASSWORD", "pw")
    fake_app.result = 3
    assert cli.main(["run", "--config", str(EXAMPLE)]) == 3


def test_run_without_password_starts_nothing(fake_app, capsys) -> None:
    assert cli.main(["run", "--config", str(EXAMPLE)]) == 2
    assert "ACD_ARI_PASSWORD: must be set" in capsys.readouterr().err
    assert fake_app.calls == []


def test_run_with_bad_config_starts_nothing(fake_app, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACD_ARI_PASSWORD", "pw")
    bad = tmp_path / "bad.toml"
    bad.write_text("[queues.support\n")
    assert cli.main(["run", "--config", str(bad)]) == 2
    assert "TOML syntax error" in capsys.readouterr().err
    assert fake_app.calls == []


def test_demo_passes_args(fake_app) -> None:
    argv = ["demo", "--duration", "5", "--speed", "20", "--seed", "7", "--agents", "6"]
    assert cli.main(argv) == 0
    [(kind, args)] = fake_app.calls
    assert kind == "demo"
    assert (args.duration, args.speed, args.seed, args.agents) == (5.0, 20.0, 7, 6)


def test_demo_defaults(fake_app) -> None:
    assert cli.main(["demo"]) == 0
    [(_, args)] = fake_app.calls
    assert (args.duration, args.speed, args.seed, args.agents) == (30.0, 10.0, 1, 6)


def test_app_may_return_a_coroutine(fake_app, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run_demo(args) -> int:
        return 5

    monkeypatch.setattr(sys.modules["controller.app"], "run_demo", run_demo)
    assert cli.main(["demo"]) == 5


def test_ctrl_c_exits_130_without_traceback(fake_app, monkeypatch, capsys) -> None:
    def run_demo(args) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["controller.app"], "run_demo", run_demo)
    assert cli.main(["demo"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "interrupted" in err


def test_missing_app_module_is_reported(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import importlib.abc

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname == "controller.app":
                raise ModuleNotFoundError("No module named 'controller.app'", name="controller.app")
            return None

    monkeypatch.delitem(sys.modules, "controller.app", raising=False)
    monkeypatch.delitem(sys.modules, "controller.demo", raising=False)  # the demo imports the app
    monkeypatch.setattr(sys, "meta_path", [Block(), *sys.meta_path])
    assert cli.main(["demo"]) == 1
    assert "controller.app is missing" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad configurations (issue 13)


def test_run_with_credentials_in_the_ari_url_exits_2(fake_app, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACD_ARI_PASSWORD", "a-long-password")
    monkeypatch.setenv("ACD_ARI_URL", "http://user:pw@host:8088")
    assert cli.main(["run", "--config", str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert "set ACD_ARI_USER and ACD_ARI_PASSWORD instead" in err and "Traceback" not in err
    assert fake_app.calls == []


@pytest.mark.parametrize("command", [["check-config", "--config", str(EXAMPLE)], ["db", "upgrade"]])
def test_a_database_url_we_cannot_use_exits_2_before_anything_starts(monkeypatch, capsys, command) -> None:
    monkeypatch.setenv("ACD_DATABASE_URL", "mysql://acd:pw@db/acd")
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert "ACD_DATABASE_URL: must be sqlite+aiosqlite:///PATH" in err and "Traceback" not in err


def test_db_upgrade_accepts_a_plain_sqlite_url(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("ACD_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    assert cli.main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.startswith(f"sqlite+aiosqlite:///{tmp_path}/x.db: at revision ")


def test_check_config_warns_about_short_secrets(monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACD_ARI_PASSWORD", "none")
    assert cli.main(["check-config", "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "settings: ACD_ARI_PASSWORD: shorter than 8 characters" in out


def test_sidecar_on_a_port_in_use_exits_2_with_a_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ACD_")}
        env |= {
            "ACD_CONFIG": str(EXAMPLE),
            "ACD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/wa.db",
            "ACD_SIDECAR_PORT": str(port),
        }
        done = subprocess.run(
            [sys.executable, "-m", "controller.cli", "sidecar"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,  # it used to hang here
        )
    assert done.returncode == 2, done.stderr
    assert f"ACD_SIDECAR_HOST/ACD_SIDECAR_PORT: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
