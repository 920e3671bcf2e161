"""Typed ARI failures, so callers branch on the class instead of parsing HTTP statuses.

Every message names what failed and what to check. None of them ever contains the ARI password:
the client builds them from the method, the path below ``/ari`` and the user name only.
"""

from __future__ import annotations


class AriError(Exception):
    """An ARI request failed. ``status`` is the HTTP status, or None when no response arrived.

    ``detail`` is Asterisk's own text from the body (``message``, or ``error`` for the 500 from
    create/originate), e.g. "Channel not in Stasis application".
    """

    def __init__(
        self, status: int | None, message: str, method: str = "", path: str = "", *, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class AriBadRequest(AriError):
    """400: a parameter Asterisk rejects (e.g. ``endpoint=agent1`` without technology)."""


class AriUnauthorized(AriError):
    """401/403: wrong ARI user/password, or a read-only ARI user trying to change something."""


class AriNotFound(AriError):
    """404: the channel/bridge/endpoint/application does not exist (any more)."""


class AriConflict(AriError):
    """409: the object is in the wrong state (e.g. channel not in Stasis, bridge not playing music)."""


class AriServerError(AriError):
    """5xx other than an endpoint allocation failure."""


class EndpointUnreachable(AriServerError):
    """500 ``{"error": "Allocation failed"}`` from create/originate.

    Asterisk answers this way when the endpoint is unregistered, unreachable or unknown: there is no
    channel and no event, so the caller must treat the agent as unavailable right away.
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        method: str = "",
        path: str = "",
        *,
        detail: str = "",
        endpoint: str = "",
    ) -> None:
        super().__init__(status, message, method, path, detail=detail)
        self.endpoint = endpoint


class AriConnectionError(AriError):
    """No HTTP response at all: connection refused, DNS failure, timeout, dropped connection."""


class Fenced(AriConnectionError):
    """Hot standby: this process no longer holds the lease, so nothing it would send may go out.

    An ``AriConnectionError`` so every caller already treats it as "no answer" (logged, counted,
    never a crash) while the process stops (``controller.ha``)."""

    def __init__(self, what: str = "") -> None:
        suffix = f": {what}" if what else ""
        super().__init__(None, f"not the active controller any more (lease lost){suffix}")


class ApplicationReplaced(Exception):
    """Another process connected a websocket for the same ARI application and took it over.

    Asterisk sends every later event to the newer socket only, so this controller must stop rather
    than keep driving calls it no longer hears about.
    """

    def __init__(self, app: str) -> None:
        super().__init__(
            f"another controller connected to ARI app {app!r} and took over; this one stops "
            "(run exactly one controller per ARI application)"
        )
        self.app = app


class MalformedEvent(ValueError):
    """A websocket message that is not a usable ARI event (bad JSON, no ``type``, wrong field types)."""
