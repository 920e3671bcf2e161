"""Where the shared reference material lives: ``../shared`` beside the repository (as in CI) or
``$ACD_SHARED_DIR``. Trace tests call ``require_traces()``: outside CI a machine without the folder
skips them, in CI (``CI`` set) they fail, so a green CI run always means the traces were compared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    override = os.environ.get("ACD_SHARED_DIR")
    return Path(override) if override else REPO.parent / "shared"


TRACES = shared_dir() / "ari-api-docs" / "traces"


def require_traces() -> None:
    if TRACES.is_dir() and any(TRACES.glob("*.json")):
        return
    message = f"golden ARI traces not found at {TRACES} (set ACD_SHARED_DIR to the shared folder)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
