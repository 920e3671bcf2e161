"""Webhook JSON -> typed events. Never raises: odd shapes become counted ``problems``.

Every ``entry x change x (messages | statuses | errors)`` is visited (Meta batches up to 1000
updates per POST). Unknown fields are ignored; missing ``contacts``/``wa_id`` and
username-only users (``from_user_id``/``user_id``) are tolerated.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from controller.whatsapp.chat import MetaError, StatusUpdate

__all__ = ["ChannelError", "Inbound", "Parsed", "StatusEvent", "load_json", "parse_webhook"]


def _number(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text  # 1e400 kept as written, never an infinity


def _constant(name: str) -> None:
    return None  # NaN, Infinity, -Infinity: not JSON, whatever Python's parser accepts


def load_json(body: bytes | str) -> Any:
    """A webhook body as Python with every number finite, so its parts store and show as JSON.

    Raises ValueError (not JSON, not UTF-8) or RecursionError (nested past Python's stack).
    """
    return json.loads(body, parse_float=_number, parse_constant=_constant)


@dataclass(frozen=True, slots=True)
class Inbound:
    phone_number_id: str
    wamid: str
    ts: float | None
    wa_id: str | None
    user_id: str | None
    username: str | None
    name: str | None
    kind: str
    body: str | None
    raw: dict
    error: MetaError | None = None

    @property
    def customer_key(self) -> str | None:
        if self.wa_id:
            return self.wa_id
        return f"user:{self.user_id}" if self.user_id else None


@dataclass(frozen=True, slots=True)
class StatusEvent:
    phone_number_id: str
    wamid: str
    update: StatusUpdate
    callback: str | None
    recipient_id: str | None
    raw: dict


@dataclass(frozen=True, slots=True)
class ChannelError:
    phone_number_id: str
    error: MetaError
    position: str  # "entry.change.error" indexes: part of the alert's dedupe key


@dataclass(slots=True)
class Parsed:
    inbound: list[Inbound] = field(default_factory=list)
    statuses: list[StatusEvent] = field(default_factory=list)
    channel_errors: list[ChannelError] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# Meta's timestamps are Unix seconds. Beyond year 9999 no clock, database or browser copes
# ("1e400" is infinity, "1e300" an Invalid Date in the panel): treated as missing.
MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z


def _ts(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        ts = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return ts if 0 <= ts <= MAX_TS else None  # NaN, infinities, negatives, far future


def _s(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _body(msg: dict, kind: str) -> str | None:
    """A short readable body for the chat, whatever the message type."""
    part = msg.get(kind)
    if kind == "text" and isinstance(part, dict):
        return _s(part.get("body"))
    if isinstance(part, dict):
        if kind == "interactive":
            for sub in ("button_reply", "list_reply", "nfm_reply"):
                reply = part.get(sub)
                if isinstance(reply, dict):
                    return _s(reply.get("title") or reply.get("body"))
        if kind == "reaction":
            return _s(part.get("emoji"))
        if kind == "button":
            return _s(part.get("text"))
        if kind == "location":
            return _s(part.get("name") or part.get("address")) or "location"
        return _s(part.get("caption") or part.get("filename"))
    return None


def _contact_for(contacts: list, wa_id: str | None, user_id: str | None) -> dict:
    for contact in contacts:
        if not isinstance(contact, dict):
            continue
        if (wa_id and contact.get("wa_id") == wa_id) or (user_id and contact.get("user_id") == user_id):
            return contact
    return contacts[0] if len(contacts) == 1 and isinstance(contacts[0], dict) else {}


def parse_webhook(doc: Any) -> Parsed:
    out = Parsed()
    if not isinstance(doc, dict):
        out.problems.append("body is not a JSON object")
        return out
    if doc.get("object") not in (None, "whatsapp_business_account"):
        out.problems.append(f"object {doc.get('object')!r} is not whatsapp_business_account")
    for ei, entry in enumerate(_list(doc.get("entry"))):
        if not isinstance(entry, dict):
            out.problems.append(f"entry[{ei}] is not an object")
            continue
        for ci, change in enumerate(_list(entry.get("changes"))):
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                out.problems.append(f"entry[{ei}].changes[{ci}] has no value object")
                continue
            if change.get("field", "messages") != "messages":
                out.problems.append(f"entry[{ei}].changes[{ci}]: field {change.get('field')!r} ignored")
                continue
            _parse_value(change["value"], f"{ei}.{ci}", out)
    return out


def _parse_value(value: dict, where: str, out: Parsed) -> None:
    metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
    pnid = _s(metadata.get("phone_number_id")) or ""
    contacts = _list(value.get("contacts"))

    for mi, msg in enumerate(_list(value.get("messages"))):
        if not isinstance(msg, dict) or not _s(msg.get("id")):
            out.problems.append(f"{where}.messages[{mi}] has no id")
            continue
        wa_id = _s(msg.get("from"))
        user_id = _s(msg.get("from_user_id"))
        contact = _contact_for(contacts, wa_id, user_id)
        wa_id = wa_id or _s(contact.get("wa_id"))
        user_id = user_id or _s(contact.get("user_id"))
        profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
        kind = _s(msg.get("type")) or "unknown"
        errors = _list(msg.get("errors"))
        item = Inbound(
            phone_number_id=pnid,
            wamid=str(msg["id"]),
            ts=_ts(msg.get("timestamp")),
            wa_id=wa_id,
            user_id=user_id,
            username=_s(profile.get("username")),
            name=_s(profile.get("name")),
            kind=kind[:32],
            body=_body(msg, kind),
            raw=msg,
            error=MetaError.from_meta(errors[0]) if errors else None,
        )
        if item.customer_key is None:
            out.problems.append(f"{where}.messages[{mi}] has neither from nor from_user_id")
            continue
        if item.ts is None and msg.get("timestamp") is not None:
            out.problems.append(f"{where}.messages[{mi}] has no valid timestamp; using the time received")
        out.inbound.append(item)

    for si, st in enumerate(_list(value.get("statuses"))):
        if not isinstance(st, dict) or not _s(st.get("id")) or not _s(st.get("status")):
            out.problems.append(f"{where}.statuses[{si}] has no id or status")
            continue
        ts = _ts(st.get("timestamp"))
        if ts is None:
            out.problems.append(f"{where}.statuses[{si}] has no valid timestamp; using 0")
        errors = _list(st.get("errors"))
        error = MetaError.from_meta(errors[0]) if errors else None
        status = str(st["status"]).lower()
        out.statuses.append(
            StatusEvent(
                phone_number_id=pnid,
                wamid=str(st["id"]),
                update=StatusUpdate(status, ts or 0.0, error, "webhook"),
                callback=_s(st.get("biz_opaque_callback_data")),
                recipient_id=_s(st.get("recipient_id")) or _s(st.get("recipient_user_id")),
                raw=st,
            )
        )

    for xi, err in enumerate(_list(value.get("errors"))):
        out.channel_errors.append(ChannelError(pnid, MetaError.from_meta(err), f"{where}.{xi}"))
