"""Log calls never pass a reserved LogRecord attribute in ``extra``.

``logging`` raises KeyError ("Attempt to overwrite 'args' in LogRecord") when it builds such a
record, i.e. only when that level is enabled: a test suite running at WARNING never sees it, a
production log at INFO crashes the handler that logs (found on a real Asterisk: a caller coming
back into Stasis was dropped). This reads every ``extra={...}`` literal in the code instead.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "controller"
RESERVED = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {"message", "asctime"}


def _extra_keys() -> list[tuple[str, int, str]]:
    found = []
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                    for key in kw.value.keys:
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            found.append((str(path.relative_to(ROOT.parent)), node.lineno, key.value))
    return found


def test_the_scan_sees_log_calls() -> None:
    keys = {k for _, _, k in _extra_keys()}
    assert {"call", "agent"} <= keys  # the scan really reads the code's extra= dicts


def test_no_log_call_overwrites_a_logrecord_attribute() -> None:
    clashes = [(f, line, k) for f, line, k in _extra_keys() if k in RESERVED]
    assert clashes == []
