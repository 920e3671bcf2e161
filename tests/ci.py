"""Missing test prerequisites: a clear skip on a developer's machine, a failure in CI.

CI sets ``CI=true``; there a missing browser, database or trace folder means the setup is
broken, and a suite that skips what it cannot run would pass while checking less than it says.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(message: str, *, module_level: bool = False) -> None:
    """Fail (in CI) or skip (elsewhere) with ``message``, which should say how to fix it."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: required)", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)


def require_module(name: str, install: str) -> None:
    """At the top of a test module: ``name`` must import, else fail in CI / skip here."""
    try:
        __import__(name)
    except ImportError as exc:
        unavailable(f"{name} is not installed ({exc}): {install}", module_level=True)
