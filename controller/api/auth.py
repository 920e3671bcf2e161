"""Who is calling the HTTP API: the admin (``ACD_ADMIN_TOKEN``) or one agent (its own token).

Tokens arrive as ``Authorization: Bearer <token>``. The admin token is compared in constant time;
agent tokens are configured as their SHA-256 (``token_sha256`` in the queue file, so the file never
holds a secret) and the digest of the presented token is compared against every agent's digest in
constant time, without stopping at the first match. This is the one auth helper of the product:
other HTTP surfaces (WhatsApp panel, ...) should use :meth:`Auth.identify` too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Auth", "AuthError", "Principal", "hash_token"]


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token, the form ``token_sha256`` expects."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: ``admin`` or ``agent`` (with ``agent_id``)."""

    role: str
    agent_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_act_for(self, agent_id: str) -> bool:
        return self.is_admin or self.agent_id == agent_id


class AuthError(Exception):
    """401 (no or unknown token) or 403 (known token, not allowed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Auth:
    def __init__(self, admin_token: str = "", agent_token_hashes: Mapping[str, str] | None = None) -> None:
        self._admin = admin_token.encode("utf-8")
        self._agents = [(a, bytes.fromhex(h)) for a, h in (agent_token_hashes or {}).items()]

    def set_agent_tokens(self, agent_token_hashes: Mapping[str, str]) -> None:
        """After a queue-file reload: new agents' tokens work, removed agents' stop working."""
        self._agents = [(a, bytes.fromhex(h)) for a, h in agent_token_hashes.items()]

    @property
    def configured(self) -> bool:
        return bool(self._admin) or bool(self._agents)

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
        if found is not None:
            return Principal("agent", found)
        raise AuthError(401, "unauthorized", "invalid token")
