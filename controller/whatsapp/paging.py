"""History pages of one conversation, cut by sort key (not by position, not by change cursor).

A page token is a message's sort key ``(event_ts, seq)``, encoded. ``before=T`` gives the
``limit`` messages just older than ``T``, ``after_key=T`` the ``limit`` just newer; both come back
in chat order. Sort keys never change once a message is stored, so:

- the pages of one walk never overlap (each page lies strictly beyond the previous token);
- a walk from the latest page along ``older`` until ``older`` is null returns, exactly once,
  every message whose key is below the previous page's oldest key when that page is fetched:
  every message that existed when the walk started, plus late ones that land in the part not
  paged yet. A late message whose key falls in the part already paged is not in any later page;
  it is a change after the first page's ``cursor``, so the stream (or ``?after=``) brings it.

Walking forward with ``newer`` is the mirror image. The change cursor (``?after=``) is a
different thing: it resumes the stream of changes and is not a position in the chat.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.whatsapp.models import Message

__all__ = ["BadToken", "Page", "decode_token", "encode_token", "read_page"]

M = Message.__table__


class BadToken(ValueError):
    """A page token that no response of this API could have given."""


def encode_token(event_ts: float, seq: int) -> str:
    """Opaque to clients, stable across requests: the same message always gives the same token."""
    raw = json.dumps([float(event_ts), int(seq)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[float, int]:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        ts, seq = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadToken(token) from None
    if (
        isinstance(ts, bool)
        or not isinstance(ts, int | float)
        or not math.isfinite(ts)
        or isinstance(seq, bool)
        or not isinstance(seq, int)
        or seq < 0
    ):
        raise BadToken(token)
    return float(ts), seq


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict]  # chat order
    older: str | None  # ``before=`` for the page before this one; None: the chat starts here
    newer: str | None  # ``after_key=`` for the page after this one; None: nothing newer (yet)


def _token(row: dict) -> str:
    return encode_token(row["event_ts"], row["seq"])


async def _exists(conn: AsyncConnection, cid: int, condition) -> bool:  # noqa: ANN001 - SQL expression
    query = select(M.c.id).where(M.c.conversation_id == cid, condition).limit(1)
    return (await conn.execute(query)).first() is not None


async def read_page(
    conn: AsyncConnection,
    cid: int,
    *,
    limit: int,
    before: tuple[float, int] | None = None,
    after_key: tuple[float, int] | None = None,
) -> Page:
    """One page in chat order; with neither token, the latest ``limit`` messages."""
    key = tuple_(M.c.event_ts, M.c.seq)
    query = select(M).where(M.c.conversation_id == cid)
    if after_key is not None:
        query = query.where(key > tuple_(*after_key)).order_by(M.c.event_ts, M.c.seq).limit(limit + 1)
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
    else:
        if before is not None:
            query = query.where(key < tuple_(*before))
        query = query.order_by(M.c.event_ts.desc(), M.c.seq.desc()).limit(limit + 1)
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        more = len(rows) > limit
        rows = rows[:limit][::-1]
    if not rows:
        return Page([], None, None)
    first, last = rows[0], rows[-1]
    if after_key is not None:
        newer = _token(last) if more else None
        older_exists = await _exists(conn, cid, key < tuple_(first["event_ts"], first["seq"]))
        older = _token(first) if older_exists else None
    else:
        older = _token(first) if more else None
        newer_exists = before is not None and await _exists(
            conn, cid, key > tuple_(last["event_ts"], last["seq"])
        )
        newer = _token(last) if newer_exists else None
    return Page(rows, older, newer)
