"""``acdctl harness``: usage errors and a missing extra give a clear message, not a traceback."""

import importlib.util

from controller.cli import main


def test_missing_extra_says_what_to_install(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pjsua2" else real(name, *a)
    )
    assert main(["harness", "check", "--config", "examples/acd.toml"]) == 2
    assert "pip install 'acd-controller[harness]'" in capsys.readouterr().err


def test_bad_exten_and_rates_are_usage_errors(capsys):
    assert main(["harness", "check", "--config", "examples/acd.toml", "--exten", "support"]) == 2
    assert "--exten wants QUEUE=EXTENSION" in capsys.readouterr().err
    assert main(["harness", "load", "--exten", "101", "--rates", "0"]) == 2
    assert "each rate must be > 0" in capsys.readouterr().err


def test_harness_needs_an_action(capsys):
    assert main(["harness"]) == 2
