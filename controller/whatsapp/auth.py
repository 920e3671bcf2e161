"""Minimal bearer-token auth for the sidecar's API and stream, until the API issue brings real auth.

Tokens come from settings: ``ACD_ADMIN_TOKEN`` and ``ACD_AGENT_TOKENS`` (``alice=tok1,bob=tok2``).
Only SHA-256 digests are kept in memory and compared in constant time. Visibility rule: an
agent sees conversations assigned to it, plus unassigned ones if it is in the channel's team
(``ACD_WA_TEAM``, comma-separated agent ids; empty = every agent with a token). The admin
sees everything. Swap :class:`TokenAuth` for the API issue's authenticator by keeping
``authenticate(token) -> Principal | None`` and ``can_see``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Principal", "TokenAuth", "parse_agent_tokens"]

_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True, slots=True)
class Principal:
    agent_id: str | None  # None for the admin
    admin: bool = False

    @property
    def label(self) -> str:
        return "admin" if self.admin else f"agent:{self.agent_id}"


def parse_agent_tokens(text: str) -> dict[str, str]:
    """``alice=tok1,bob=tok2`` -> {"alice": "tok1", ...}; ValueError naming the agent, never the token."""
    tokens: dict[str, str] = {}
    for i, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        agent, sep, token = part.partition("=")
        agent, token = agent.strip(), token.strip()
        if not sep or not _AGENT_ID.match(agent):
            raise ValueError(f"entry {i + 1}: expected agent=token, agent id of letters, digits, _ - .")
        if len(token) < 8:
            raise ValueError(f"agent {agent}: token must be at least 8 characters")
        if agent in tokens:
            raise ValueError(f"agent {agent}: listed twice")
        tokens[agent] = token
    return tokens


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenAuth:
    def __init__(
        self,
        admin_token: str = "",
        agent_tokens: Mapping[str, str] | None = None,
        team: Iterable[str] | None = None,
    ) -> None:
        self._admin = _digest(admin_token) if admin_token else None
        self._agents = [(agent, _digest(tok)) for agent, tok in (agent_tokens or {}).items()]
        team_set = frozenset(t for t in (team or ()) if t)
        self.team: frozenset[str] = team_set or frozenset(a for a, _ in self._agents)

    @property
    def agents(self) -> list[str]:
        return [a for a, _ in self._agents]

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        digest = _digest(token)
        found: Principal | None = None
        # Compare against every digest so timing doesn't reveal which one matched.
        if self._admin is not None and hmac.compare_digest(digest, self._admin):
            found = Principal(None, admin=True)
        for agent, expected in self._agents:
            if hmac.compare_digest(digest, expected) and found is None:
                found = Principal(agent)
        return found

    def can_see(self, principal: Principal, assigned_agent: str | None) -> bool:
        if principal.admin:
            return True
        if assigned_agent is None:
            return principal.agent_id in self.team
        return assigned_agent == principal.agent_id
