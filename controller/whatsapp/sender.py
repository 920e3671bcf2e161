"""Agents' outgoing messages: checks, per-conversation send queues, retries, failures.

A message is stored as ``pending`` (and pushed) before Meta is called, so the agent sees it at
once. Each conversation has one queue: the next message goes out only after the previous one
was accepted or has finally failed (Meta doesn't keep request order otherwise). Transient codes
are retried with backoff (131056: 4^X s); permanent ones land on the bubble with the catalog's
explanation; channel codes also raise a channel alert. When Meta cannot even be connected to
(the request never left) the send is retried with the same backoff as transient codes, then
``failed`` (certainly not sent: the agent may resend). Once the request may have reached Meta, a
timeout or broken connection makes the message ``unknown``: never resent blindly. ``in_flight``
is committed before each call, so after a crash an interrupted send becomes ``unknown`` and a
never-attempted one is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from controller.whatsapp.auth import Principal, SidecarAuth
from controller.whatsapp.changes import ChangeLog, Unit, message_view
from controller.whatsapp.chat import MetaError, StatusUpdate, window_open
from controller.whatsapp.errors import (
    NOT_SENT_CODE,
    WINDOW_CLOSED_CODE,
    RetryClass,
    backoff_seconds,
    retry_class,
)
from controller.whatsapp.graph import (
    Accepted,
    GraphClient,
    NotSent,
    Rejected,
    template_payload,
    text_payload,
)
from controller.whatsapp.metrics import Counters
from controller.whatsapp.models import Message

__all__ = ["SendError", "Sender", "validate_request"]

log = logging.getLogger("controller.whatsapp.sender")

M = Message.__table__
MAX_TEXT = 4096


class SendError(Exception):
    """A send request refused before anything was stored (HTTP status + reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def validate_request(body: Any) -> tuple[str, str | None, dict | None]:
    """``{"type": "text", "text": "..."}`` or ``{"type": "template", "template": {...}}``."""
    if not isinstance(body, dict):
        raise SendError(400, "body must be a JSON object")
    kind = body.get("type", "text")
    if kind == "text":
        text = body.get("text")
        if isinstance(text, dict):
            text = text.get("body")
        if not isinstance(text, str) or not text.strip():
            raise SendError(400, "text must be a non-empty string")
        if len(text) > MAX_TEXT:
            raise SendError(400, f"text is longer than {MAX_TEXT} characters")
        return "text", text, None
    if kind == "template":
        tpl = body.get("template")
        if not isinstance(tpl, dict) or not isinstance(tpl.get("name"), str) or not tpl["name"]:
            raise SendError(400, "template.name must be a non-empty string")
        language = tpl.get("language", "pt_BR")
        if isinstance(language, str):
            language = {"code": language}
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            raise SendError(400, 'template.language must be a code such as "pt_BR"')
        components = tpl.get("components", [])
        if not isinstance(components, list):
            raise SendError(400, "template.components must be a list")
        template = {"name": tpl["name"], "language": {"code": language["code"]}}
        if components:
            template["components"] = components
        return "template", f"[template {tpl['name']} ({language['code']})]", template
    raise SendError(400, 'type must be "text" or "template"')


class Sender:
    def __init__(
        self,
        changelog: ChangeLog,
        graph: GraphClient | None,
        auth: SidecarAuth,
        metrics: Counters,
        *,
        phone_number_id: str = "",
        backoff_scale: float = 1.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.changelog = changelog
        self.graph = graph
        self.auth = auth
        self.metrics = metrics
        self.phone_number_id = phone_number_id
        self.backoff_scale = backoff_scale
        self._sleep = sleep
        self._queues: dict[int, deque[str]] = {}
        self._tasks: dict[int, asyncio.Task] = {}

    # ----------------------------------------------------------------- API entry

    async def submit(self, principal: Principal, conversation_id: int, body: Any) -> tuple[int, dict]:
        """Store the agent's message and queue it. Returns (HTTP status, response body)."""
        kind, text, template = validate_request(body)
        if self.graph is None:
            raise SendError(
                503, "sending is not configured: set ACD_WA_ACCESS_TOKEN and ACD_WA_PHONE_NUMBER_ID"
            )
        async with self.changelog.unit() as u:
            conv = await u.conversation(conversation_id)
            if conv is None or not self.auth.can_see(principal, conv["assigned_agent"]):
                raise SendError(404, "no such conversation (or not yours)")
            if not conv["wa_id"]:
                raise SendError(
                    422, "this customer has no phone number (username-only user): cannot send yet"
                )
            if self.phone_number_id and conv["phone_number_id"] not in ("", self.phone_number_id):
                raise SendError(422, "this conversation belongs to another business phone number")
            if principal.agent_id is not None and conv["assigned_agent"] is None:
                u.assign(conv, principal.agent_id)  # the agent who answers takes the conversation
            m = u.add_message(
                conv,
                direction="out",
                event_ts=u.now,
                kind=kind,
                body=text,
                content=template,
                agent_id=principal.agent_id or "admin",
                status="pending",
            )
            refused = kind == "text" and not window_open(conv["last_inbound_at"], u.now)
            if refused:
                self._refuse_window(u, m, conv["last_inbound_at"])
        if refused:
            self.metrics.inc("send_refused", reason="window_closed")
            log.info(
                "free text refused: 24-hour window closed",
                extra={"message_id": m["id"], "conversation": conversation_id},
            )
            return 422, {"message": message_view(m), "error": message_view(m)["error"]}
        self.enqueue(conversation_id, m["id"])
        self.metrics.inc("send_queued")
        return 202, {"message": message_view(m)}

    def _refuse_window(self, u: Unit, m: dict, last_inbound_at: float | None) -> None:
        if last_inbound_at is None:
            details = "refused before calling Meta: the customer has not written yet"
        else:
            hours = int(u.now - last_inbound_at) // 3600
            details = f"refused before calling Meta: the customer's last message was {hours} h ago"
        error = MetaError(
            WINDOW_CLOSED_CODE,
            title="Re-engagement message",
            message="Re-engagement message",
            details=details,
        )
        u.apply(m, StatusUpdate("failed", u.now, error, "local"))

    # ----------------------------------------------------------------- queues

    def enqueue(self, conversation_id: int, message_id: str) -> None:
        self._queues.setdefault(conversation_id, deque()).append(message_id)
        task = self._tasks.get(conversation_id)
        if task is None or task.done():
            self._tasks[conversation_id] = asyncio.create_task(self._run(conversation_id))

    async def _run(self, conversation_id: int) -> None:
        queue = self._queues[conversation_id]
        try:
            while queue:
                message_id = queue.popleft()
                try:
                    await self._deliver(message_id)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one bad message must not stop the conversation's queue
                    self.metrics.inc("send_crashed")
                    log.exception(
                        "send failed unexpectedly; message left pending", extra={"message_id": message_id}
                    )
        finally:
            if not queue:
                self._queues.pop(conversation_id, None)
                self._tasks.pop(conversation_id, None)

    async def drain(self) -> None:
        """Wait until every queued message has a final answer (tests, benchmark, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def recover(self) -> int:
        """At start: interrupted sends become unknown; never-attempted ones are queued again."""
        requeue: list[tuple[int, str]] = []
        async with self.changelog.unit() as u:
            rows = await u.conn.execute(
                select(M.c.id).where(M.c.direction == "out", M.c.status == "pending", M.c.wamid.is_(None))
            )
            ids = list(rows.scalars())
            await u.load_messages(ids=ids)
            for m in sorted((u.messages[i] for i in ids), key=lambda r: (r["conversation_id"], r["seq"])):
                if m["in_flight"]:
                    m["in_flight"] = False
                    u.apply(m, StatusUpdate("unknown", u.now, None, "send"))
                else:
                    requeue.append((m["conversation_id"], m["id"]))
        for cid, mid in requeue:
            self.enqueue(cid, mid)
        if ids:
            log.info(
                "send queue recovered", extra={"requeued": len(requeue), "unknown": len(ids) - len(requeue)}
            )
        return len(ids)

    # ----------------------------------------------------------------- one message

    async def _deliver(self, message_id: str) -> None:
        assert self.graph is not None
        attempt = 0  # retries after Meta's transient codes
        unreachable = 0  # retries after a connection that was never made
        while True:
            async with self.changelog.unit() as u:
                await u.load_messages(ids=[message_id])
                m = u.messages.get(message_id)
                if m is None or m["status"] != "pending" or m["wamid"]:
                    return
                conv = await u.conversation(m["conversation_id"])
                assert conv is not None
                if m["kind"] == "text" and not window_open(conv["last_inbound_at"], u.now):
                    self._refuse_window(u, m, conv["last_inbound_at"])
                    return
                m["attempts"] += 1
                m["in_flight"] = True
                if m["kind"] == "template":
                    payload = template_payload(conv["wa_id"], m["content"], m["id"])
                else:
                    payload = text_payload(conv["wa_id"], m["body"], m["id"])
            result = await self.graph.send(payload)
            retry_in: float | None = None
            async with self.changelog.unit() as u:
                await u.load_messages(ids=[message_id])
                m = u.messages[message_id]
                m["in_flight"] = False
                if isinstance(result, Accepted):
                    u.set_wamid(m, result.wamid)
                    self.metrics.inc("send_accepted")
                    log.info("message accepted by Meta", extra={"message_id": m["id"], "wamid": result.wamid})
                elif isinstance(result, Rejected):
                    code = result.error.code
                    cls = retry_class(code)
                    attempt += 1
                    retry_in = backoff_seconds(code, attempt) if cls is RetryClass.TRANSIENT else None
                    extra = {
                        "message_id": m["id"],
                        "code": code,
                        "retry_class": cls.value,
                        "http_status": result.http_status,
                        "fbtrace_id": result.error.fbtrace_id,
                    }
                    if retry_in is None:
                        u.apply(m, StatusUpdate("failed", u.now, result.error, "send"))
                        self.metrics.inc("send_failed", code=code, retry_class=cls.value)
                        log.warning("Meta refused the message", extra=extra)
                    else:
                        self.metrics.inc("send_retried", code=code)
                        log.info("transient Meta error; retrying", extra={**extra, "in_s": retry_in})
                elif isinstance(result, NotSent):
                    unreachable += 1
                    retry_in = backoff_seconds(NOT_SENT_CODE, unreachable)
                    extra = {"message_id": m["id"], "reason": result.reason, "attempt": unreachable}
                    if retry_in is None:
                        error = MetaError(
                            NOT_SENT_CODE,
                            title="Meta unreachable: not sent",
                            message=result.reason,
                            details=f"no connection to Meta after {unreachable} attempts; nothing was sent",
                        )
                        u.apply(m, StatusUpdate("failed", u.now, error, "send"))
                        self.metrics.inc(
                            "send_failed", code="network", retry_class=RetryClass.TRANSIENT.value
                        )
                        log.warning("Meta unreachable; message not sent, given up", extra=extra)
                    else:
                        self.metrics.inc("send_retried", code="network")
                        log.info(
                            "Meta unreachable; request never sent, retrying",
                            extra={**extra, "in_s": retry_in},
                        )
                else:
                    u.apply(m, StatusUpdate("unknown", u.now, None, "send"))
                    self.metrics.inc("send_unknown")
                    log.warning(
                        "send outcome unknown; not resending",
                        extra={"message_id": m["id"], "reason": result.reason},
                    )
            if retry_in is None:
                return
            await self._sleep(retry_in * self.backoff_scale)
