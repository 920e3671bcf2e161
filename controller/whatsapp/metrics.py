"""A tiny in-process counter set: every rejection and every processed item is counted here.

Prometheus export comes with the metrics issue; it will read :meth:`Counters.snapshot`.
"""

from __future__ import annotations

import threading
from collections import Counter as _Counter

__all__ = ["Counters"]


def _key(name: str, labels: dict[str, object]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


class Counters:
    """Monotonic counters keyed by name and labels, e.g. ``webhook_rejected{reason="signature"}``."""

    def __init__(self) -> None:
        self._values: _Counter[str] = _Counter()
        self._lock = threading.Lock()

    def inc(self, name: str, n: int = 1, **labels: object) -> None:
        with self._lock:
            self._values[_key(name, labels)] += n

    def get(self, name: str, **labels: object) -> int:
        with self._lock:
            return self._values.get(_key(name, labels), 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._values.items()))
