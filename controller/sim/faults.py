"""Fault injection: make given ARI requests fail or come back slowly, so each failure gets a test.

    fault = sim.faults.add("POST", r"/channels/[^/]+/dial", status=500)          # refused, not done
    sim.faults.add("POST", r"/channels/create", status=500, apply=True)          # done, client sees 500
    sim.faults.add("POST", r"/bridges/[^/]+/addChannel", delay=3.0, times=None)  # slow Asterisk
    sim.refuse_websockets(10.0)                                                  # no events socket for 10 s

``path`` is a regex fullmatched against the request path below ``/ari`` (``/events`` is the
websocket upgrade). The first live fault that matches a request handles it: it waits ``delay``
clock seconds, then either answers ``status``/``body`` without performing the request
(``apply=False``) or performs it and answers ``status``/``body`` instead of the real answer
(``apply=True``: the ambiguous failure). Without ``status`` the request is performed at once and
its real answer is held for ``delay``. ``times`` is how many requests it affects (None: forever);
``hits`` counts them. The default body is Asterisk's ``{"message": <reason phrase>}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass(eq=False)
class Fault:
    """One injected fault; ``hits`` counts the requests it has handled."""

    method: str
    path: str
    status: int | None = None
    body: dict[str, Any] | None = None
    delay: float = 0.0
    times: int | None = 1
    apply: bool = False
    hits: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self._pattern = re.compile(self.path)

    @property
    def live(self) -> bool:
        return self.times is None or self.hits < self.times

    def matches(self, method: str, path: str) -> bool:
        return self.live and method.upper() == self.method and self._pattern.fullmatch(path) is not None

    def response_body(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        assert self.status is not None
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Error"
        return {"message": phrase}


class Faults:
    """The sim's fault table (``sim.faults``)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        body: dict[str, Any] | None = None,
        delay: float = 0.0,
        times: int | None = 1,
        apply: bool = False,
    ) -> Fault:
        if status is None and delay <= 0:
            raise ValueError("a fault needs a status or a delay")
        if status is None and body is not None:
            raise ValueError("a body needs a status")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        fault = Fault(method, path, status, body, delay, times, apply)
        self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        if fault in self._faults:
            self._faults.remove(fault)

    def clear(self) -> None:
        self._faults.clear()

    @property
    def active(self) -> list[Fault]:
        return [f for f in self._faults if f.live]

    def take(self, method: str, path: str) -> Fault | None:
        """The fault that handles this request (its ``hits`` counted), or None."""
        for fault in self._faults:
            if fault.matches(method, path):
                fault.hits += 1
                return fault
        return None
