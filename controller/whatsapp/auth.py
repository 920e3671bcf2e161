"""Who may use the sidecar's API and stream, and which conversations each caller sees.

Identity is the controller's: :class:`controller.api.auth.Auth` checks ``ACD_ADMIN_TOKEN`` and the
agents' tokens, configured once as SHA-256 digests (``token_sha256`` under ``[agents.ID]`` in the
queue file), so an agent signs in to the panel, the controller's API and the sidecar with the
same token. This module only adds the sidecar's visibility rule on top: an agent sees the
conversations assigned to it, plus unassigned ones if it is in the channel's team
(``ACD_WA_TEAM``; empty = every agent with a token). The admin sees everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from controller.api.auth import Auth, AuthError, Principal, hash_token

__all__ = ["AuthError", "Principal", "SidecarAuth", "hash_token", "label", "validate_token_hashes"]

_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def validate_token_hashes(hashes: Mapping[str, str]) -> dict[str, str]:
    """agent id -> lower-case hex SHA-256; ValueError naming the agent (never the value)."""
    out: dict[str, str] = {}
    for agent, digest in hashes.items():
        if not isinstance(agent, str) or not _AGENT_ID.match(agent):
            raise ValueError(f"agent id {agent!r}: must be letters, digits, '_', '-' or '.'")
        if not isinstance(digest, str) or not _HEX64.match(digest.strip()):
            raise ValueError(f"agent {agent}: token hash must be 64 hex digits (the token's SHA-256)")
        out[agent] = digest.strip().lower()
    return out


def label(principal: Principal) -> str:
    """``admin`` or ``agent:<id>``, for logs."""
    return "admin" if principal.is_admin else f"agent:{principal.agent_id}"


class SidecarAuth:
    """:class:`Auth` (the product's one token check) plus the sidecar's visibility rule."""

    def __init__(
        self,
        admin_token: str = "",
        agent_token_hashes: Mapping[str, str] | None = None,
        team: Iterable[str] | None = None,
    ) -> None:
        hashes = validate_token_hashes(agent_token_hashes or {})
        self._auth = Auth(admin_token, hashes)
        self.agents: list[str] = list(hashes)
        team_set = frozenset(t for t in (team or ()) if t)
        self.team: frozenset[str] = team_set or frozenset(self.agents)

    @property
    def configured(self) -> bool:
        return self._auth.configured

    def identify(self, authorization: str | None) -> Principal:
        """The caller for an ``Authorization`` header value, or :class:`AuthError` (401)."""
        return self._auth.identify(authorization)

    def authenticate(self, token: str | None) -> Principal | None:
        """The caller for a bare token (``?token=`` on streams), or None."""
        if not token:
            return None
        try:
            return self._auth.identify(f"Bearer {token}")
        except AuthError:
            return None

    def can_see(self, principal: Principal, assigned_agent: str | None) -> bool:
        if principal.is_admin:
            return True
        if assigned_agent is None:
            return principal.agent_id in self.team
        return assigned_agent == principal.agent_id
