"""Strict JSON out of the sidecar: every answer, stream frame and relayed body.

Python's ``json`` writes bare ``Infinity``/``NaN`` by default, which every JSON parser refuses;
one odd stored value would then break a chat for every agent. Non-finite floats become null.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(data: Any, *, compact: bool = False) -> str:
    """Strict JSON (never a bare ``Infinity``); ``compact`` drops the spaces (stream frames)."""
    separators = (",", ":") if compact else None
    try:
        return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=separators)
    except ValueError:  # a non-finite float from old or odd data: show it as null
        return json.dumps(_finite(data), ensure_ascii=False, allow_nan=False, separators=separators)
