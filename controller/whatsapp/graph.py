"""Meta Graph API client: ``POST /{version}/{phone_number_id}/messages`` for text and templates.

Four outcomes, because the send API has no idempotency key: ``Accepted`` (200 + wamid; means
accepted, not delivered), ``Rejected`` (an ``error`` object: the message was not accepted, safe
to classify and maybe retry), ``NotSent`` (the request never left: safe to retry) and ``Unknown``
(the request may have reached Meta but no usable answer came back: it may or may not have been
accepted, so nobody resends it blindly).

Which transport errors mean "never left" (httpx): ``ConnectError`` (refused, reset or closed
while connecting, DNS, TLS handshake), ``ConnectTimeout`` and ``PoolTimeout`` (no connection was
ever had). Everything later is ``Unknown``: ``WriteError``/``WriteTimeout`` (part of the request,
maybe all of it, is already on the wire), ``ReadError``/``ReadTimeout`` and
``RemoteProtocolError`` (sent in full; Meta may have accepted it before the connection broke,
including a kept-alive connection the server closed as we reused it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from controller.whatsapp.chat import MetaError

__all__ = ["Accepted", "GraphClient", "NotSent", "Rejected", "Unknown", "template_payload", "text_payload"]

log = logging.getLogger("controller.whatsapp.graph")

DEFAULT_GRAPH_URL = "https://graph.facebook.com/v24.0"


@dataclass(frozen=True, slots=True)
class Accepted:
    wamid: str
    wa_id: str | None


@dataclass(frozen=True, slots=True)
class Rejected:
    http_status: int
    error: MetaError


@dataclass(frozen=True, slots=True)
class NotSent:
    """No connection was made, so Meta never saw the request: retrying cannot duplicate it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unknown:
    reason: str


SendResult = Accepted | Rejected | NotSent | Unknown

# Subclasses of TimeoutException/NetworkError: caught before them (see the module docstring).
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _to(wa_id: str) -> str:
    return f"+{wa_id}" if wa_id.isdigit() else wa_id


def text_payload(wa_id: str, body: str, callback: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": _to(wa_id),
        "type": "text",
        "text": {"preview_url": False, "body": body},
        "biz_opaque_callback_data": callback,
    }


def template_payload(wa_id: str, template: dict[str, Any], callback: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": _to(wa_id),
        "type": "template",
        "template": template,
        "biz_opaque_callback_data": callback,
    }


class GraphClient:
    def __init__(
        self,
        graph_url: str,
        phone_number_id: str,
        access_token: str,
        *,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.phone_number_id = phone_number_id
        self._url = f"{graph_url.rstrip('/')}/{phone_number_id}/messages"
        self._client = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {access_token}"},
        )

    async def send(self, payload: dict[str, Any]) -> SendResult:
        try:
            response = await self._client.post(self._url, json=payload)
        except _NEVER_SENT as exc:
            return NotSent(f"{type(exc).__name__}: {exc}"[:300])
        except httpx.TimeoutException as exc:
            return Unknown(f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return Unknown(f"network error: {type(exc).__name__}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= response.status_code < 300:
            try:
                wamid = body["messages"][0]["id"]
            except (KeyError, IndexError, TypeError):
                return Unknown(f"HTTP {response.status_code} without a message id")
            contacts = body.get("contacts") if isinstance(body, dict) else None
            wa_id = contacts[0].get("wa_id") if isinstance(contacts, list) and contacts else None
            return Accepted(str(wamid), wa_id)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return Rejected(response.status_code, MetaError.from_meta(body["error"]))
        if response.status_code >= 500:
            return Unknown(f"HTTP {response.status_code} without an error body")
        return Rejected(
            response.status_code,
            MetaError(None, title=f"HTTP {response.status_code}", message=response.text[:500] or None),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
