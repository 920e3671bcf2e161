"""Optional CRM lookup for the offer card: one GET per call, bounded by a timeout, never blocking calls.

``ACD_CRM_URL`` is a URL template such as ``https://crm.example/api/customers?phone={caller_number}``
(placeholders: ``caller_number``, ``caller_name``, ``queue``, ``call_id``; values are URL-encoded).
The answer must be a JSON object; its scalar fields become ``label: value`` lines on the card
(first 20). Routing never waits for it: the card shows "pending" and is updated when the answer
arrives; a slow, failing or absent CRM only leaves that block empty, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import string
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

__all__ = ["CrmLookup", "PLACEHOLDERS", "check_template"]

log = logging.getLogger("controller.panel.crm")

PLACEHOLDERS = ("caller_number", "caller_name", "queue", "call_id")
MAX_FIELDS = 20
MAX_BODY = 64 * 1024
_CACHE = 2000


def check_template(template: str) -> str | None:
    """None if the template is usable, else what is wrong with it (for the settings error)."""
    if not template.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"is not a valid template ({exc}); write placeholders as {{caller_number}}"
    unknown = sorted(set(names) - set(PLACEHOLDERS))
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; known: " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
    return None


def _flatten(doc: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in doc.items():
        if len(out) >= MAX_FIELDS:
            break
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            continue  # nested objects and lists are not shown
        out[str(key)[:60]] = text[:300]
    return out


class CrmLookup:
    """Per-call lookups with a small LRU of results; ``on_done(call_id)`` runs when one finishes."""

    def __init__(
        self,
        template: str,
        timeout: float = 2.0,
        *,
        on_done: Callable[[str], None] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.template = template
        self.timeout = timeout
        self.on_done = on_done
        self._session = session
        self._own_session = session is None
        self._results: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        self.stats: Counter[str] = Counter()

    def request(self, call_id: str, fields: dict[str, str]) -> dict[str, Any]:
        """The lookup's state for this call, starting it on first ask."""
        found = self._results.get(call_id)
        if found is not None:
            return found
        pending = {"status": "pending", "data": None, "error": None}
        self._remember(call_id, pending)
        task = asyncio.get_running_loop().create_task(self._run(call_id, fields), name=f"crm:{call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return pending

    def _remember(self, call_id: str, value: dict[str, Any]) -> None:
        self._results[call_id] = value
        self._results.move_to_end(call_id)
        while len(self._results) > _CACHE:
            self._results.popitem(last=False)

    async def _run(self, call_id: str, fields: dict[str, str]) -> None:
        url = self.template.format(**{k: quote(str(fields.get(k, "")), safe="") for k in PLACEHOLDERS})
        result: dict[str, Any]
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            async with asyncio.timeout(self.timeout):
                async with self._session.get(url, headers={"Accept": "application/json"}) as resp:
                    if resp.status == 404:
                        result = {"status": "ok", "data": {}, "error": None}  # unknown customer
                    elif resp.status >= 400:
                        raise RuntimeError(f"HTTP {resp.status}")
                    else:
                        body = await resp.content.read(MAX_BODY + 1)
                        if len(body) > MAX_BODY:
                            raise RuntimeError("answer larger than 64 KiB")
                        doc = _json(body)
                        result = {"status": "ok", "data": _flatten(doc), "error": None}
            self.stats["ok"] += 1
        except TimeoutError:
            self.stats["timeout"] += 1
            reason = f"CRM did not answer within {self.timeout:g} s"
            result = {"status": "error", "data": None, "error": reason}
            log.warning("CRM lookup timed out", extra={"call": call_id, "timeout": self.timeout})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any CRM failure stays on the card, never in the call path
            self.stats["error"] += 1
            reason = str(exc)[:200] or type(exc).__name__
            result = {"status": "error", "data": None, "error": f"CRM lookup failed: {reason}"}
            log.warning("CRM lookup failed", extra={"call": call_id, "error": reason})
        self._remember(call_id, result)
        if self.on_done is not None:
            self.on_done(call_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None and self._own_session:
            await self._session.close()


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise RuntimeError("the answer is not JSON") from None
    if not isinstance(doc, dict):
        raise RuntimeError("the answer is not a JSON object")
    return doc
