"""Who is calling the HTTP API: the admin (``ACD_ADMIN_TOKEN``), one agent (its own token) or a
supervisor (``[supervisors.ID]`` in the queue file: the wallboard and agent actions in its queues).

Tokens arrive as ``Authorization: Bearer <token>``. The admin token is compared in constant time;
agent tokens are configured as their SHA-256 (``token_sha256`` in the queue file, so the file never
holds a secret) and the digest of the presented token is compared against every agent's digest in
constant time, without stopping at the first match. This is the one auth helper of the product:
other HTTP surfaces (WhatsApp panel, ...) should use :meth:`Auth.identify` too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Auth", "AuthError", "Principal", "hash_token"]


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token, the form ``token_sha256`` expects."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: ``admin``, ``agent`` (with ``agent_id``) or ``supervisor`` (with
    ``supervisor_id``, ``name`` and the ``queues`` it supervises)."""

    role: str
    agent_id: str | None = None
    supervisor_id: str | None = None
    name: str | None = None
    queues: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"

    @property
    def label(self) -> str:
        """Who did it, as the history keeps it: ``admin``, ``agent:ID``, ``supervisor:ID``."""
        if self.role == "agent":
            return f"agent:{self.agent_id}"
        if self.role == "supervisor":
            return f"supervisor:{self.supervisor_id}"
        return self.role

    def supervises(self, queues: Iterable[str]) -> bool:
        """Admin, or a supervisor of at least one of these queues."""
        return self.is_admin or (self.is_supervisor and not self.queues.isdisjoint(queues))

    def may_act_for(self, agent_id: str) -> bool:
        return self.is_admin or self.agent_id == agent_id


class AuthError(Exception):
    """401 (no or unknown token) or 403 (known token, not allowed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


Supervisors = Mapping[str, tuple[str, str, frozenset[str]]]  # id -> (name, token sha256, queues)


class Auth:
    def __init__(
        self,
        admin_token: str = "",
        agent_token_hashes: Mapping[str, str] | None = None,
        supervisors: Supervisors | None = None,
    ) -> None:
        self._admin = admin_token.encode("utf-8")
        self._agents = [(a, bytes.fromhex(h)) for a, h in (agent_token_hashes or {}).items()]
        self._supervisors: list[tuple[bytes, Principal]] = []
        self.set_supervisors(supervisors or {})

    def set_supervisors(self, supervisors: Supervisors) -> None:
        """At start and after a queue-file reload (``load_supervisors``)."""
        self._supervisors = [
            (bytes.fromhex(digest), Principal("supervisor", supervisor_id=s, name=name, queues=queues))
            for s, (name, digest, queues) in supervisors.items()
        ]

    def set_agent_tokens(self, agent_token_hashes: Mapping[str, str]) -> None:
        """After a queue-file reload: new agents' tokens work, removed agents' stop working."""
        self._agents = [(a, bytes.fromhex(h)) for a, h in agent_token_hashes.items()]

    @property
    def configured(self) -> bool:
        return bool(self._admin) or bool(self._agents) or bool(self._supervisors)

    def identify(self, authorization: str | None) -> Principal:
        """The principal for an ``Authorization`` header value, or AuthError(401)."""
        if not self.configured:
            raise AuthError(401, "unauthorized", "the API is disabled: set ACD_ADMIN_TOKEN to use it")
        if not authorization:
            raise AuthError(401, "unauthorized", "missing token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "unauthorized", "expected 'Authorization: Bearer <token>'")
        raw = token.encode("utf-8")
        if self._admin and hmac.compare_digest(raw, self._admin):
            return Principal("admin")
        digest = hashlib.sha256(raw).digest()
        found: str | None = None
        for agent_id, expected in self._agents:  # no early exit: same time whichever agent matches
            if hmac.compare_digest(digest, expected):
                found = agent_id
        supervisor: Principal | None = None
        for expected, principal in self._supervisors:
            if hmac.compare_digest(digest, expected):
                supervisor = principal
        if found is not None:
            return Principal("agent", found)
        if supervisor is not None:
            return supervisor
        raise AuthError(401, "unauthorized", "invalid token")
