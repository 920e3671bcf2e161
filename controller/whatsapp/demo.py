"""The sidecar with simulated WhatsApp traffic, for ``acdctl demo``: no Meta account needed.

:func:`start_demo_sidecar` starts the real sidecar (temporary SQLite database, ephemeral port)
with an in-process fake Graph API (an ``httpx.MockTransport``) and a traffic loop: customers
write, agents answer through the API, Meta's fake answers and signed status webhooks come back
out of order and duplicated, and some sends fail the way they do in production:

- 130472 (marketing template to a customer in Meta's experiment), via a ``failed`` webhook;
- 131026 (undeliverable), via a ``failed`` webhook;
- 131047 (free text after 24 h), refused before calling Meta;
- 131056 (pair rate limit) once, then retried and accepted;
- 130429 as a channel-level ``value.errors`` alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from aiohttp import web

from controller.whatsapp.service import WEBHOOK_PATH, WhatsAppConfig, WhatsAppService

__all__ = ["DemoSidecar", "start_demo_sidecar"]

log = logging.getLogger("controller.whatsapp.demo")

PNID = "100000000000001"
ADMIN_TOKEN = "demo-admin-token"
AGENT_TOKENS = {"alice": "demo-alice-token", "bob": "demo-bob-token"}
CUSTOMERS = [
    ("5511987654321", "Maria Souza", "ok"),
    ("5521998765432", "João Lima", "experiment"),  # marketing templates fail with 130472
    ("5531977776666", "Pedro Alves", "undeliverable"),  # 131026
    ("5541966665555", "Ana Costa", "rate_limited_once"),  # 131056, then accepted
    ("5551955554444", "Carla Dias", "window_closed"),  # last wrote 26 h ago: free text refused
]
# Approved templates (as the admin would list them in ACD_WA_TEMPLATES_FILE).
TEMPLATES = [
    {
        "name": "atualizacao_pedido",
        "language": "pt_BR",
        "category": "UTILITY",
        "body": "Olá! Seu pedido {{1}} foi atualizado. Acompanhe a entrega pelo link enviado por e-mail.",
    },
    {
        "name": "retomar_atendimento",
        "language": "pt_BR",
        "category": "UTILITY",
        "body": "Olá, {{1}}! Podemos continuar o seu atendimento? Responda esta mensagem para falar com a "
        "nossa equipe.",
    },
    {
        "name": "promo_semana",
        "language": "pt_BR",
        "category": "MARKETING",
        "body": "Só esta semana: {{1}}% de desconto em toda a loja. Responda SAIR para não receber ofertas.",
    },
]
LINES = ["Oi, meu pedido ainda não chegou", "Qual o prazo de entrega?", "Obrigado!", "Podem me ligar?"]
REPLIES = ["Oi! Vou verificar agora.", "O pedido sai hoje.", "Posso ajudar em algo mais?"]


def _envelope(value: dict[str, Any]) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "551100000000", "phone_number_id": PNID},
        **value,
    }
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "200000000000001", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(doc).encode()  # ensure_ascii: non-ASCII escaped like Meta's bodies


@dataclass
class DemoSidecar:
    url: str
    service: WhatsAppService
    _runner: web.AppRunner
    _tmpdir: str | None
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _http: aiohttp.ClientSession | None = None
    stats: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        m = self.service.metrics
        failures = {
            k.split('code="')[1].split('"')[0]: v
            for k, v in m.snapshot().items()
            if k.startswith("send_failed") and 'code="' in k
        }
        lines = [
            f"WhatsApp sidecar (simulated Meta) at {self.url}",
            f"  webhooks accepted {m.get('webhook_accepted')}, rejected "
            f"{sum(v for k, v in m.snapshot().items() if k.startswith('webhook_rejected'))}, "
            f"duplicates ignored {m.get('webhook_duplicates', kind='message')}",
            f"  customer messages {self.stats['inbound']}, agent replies {self.stats['sent']}, "
            f"refused (24 h window) {m.get('send_refused', reason='window_closed')}, "
            f"failed at once {dict(failures) or 0}, failed later by webhook {self.stats['failed_webhooks']}, "
            f"retried {sum(v for k, v in m.snapshot().items() if k.startswith('send_retried'))}",
            f"  try: curl -H 'Authorization: Bearer {AGENT_TOKENS['alice']}' {self.url}/api/conversations",
        ]
        return "\n".join(lines)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        await self._runner.cleanup()
        await self.service.stop()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


class _FakeMeta:
    """Answers sends like the Graph API and schedules the status webhooks Meta would send."""

    def __init__(self, demo: DemoSidecar, secret: str, rng: random.Random, speed: float) -> None:
        self.demo = demo
        self.secret = secret
        self.rng = rng
        self.speed = speed
        self.count = 0
        self.rate_limited: set[str] = set()
        self.kind = {wa_id: kind for wa_id, _, kind in CUSTOMERS}

    def handle(self, request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        wa_id = payload["to"].lstrip("+")
        kind = self.kind.get(wa_id, "ok")
        if kind == "rate_limited_once" and wa_id not in self.rate_limited:
            self.rate_limited.add(wa_id)
            return httpx.Response(
                400,
                json={
                    "error": {
                        "message": "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                        "type": "OAuthException",
                        "code": 131056,
                        "fbtrace_id": "DemoTrace131056",
                    }
                },
            )
        self.count += 1
        wamid = f"wamid.DEMO{self.count:06d}{self.rng.randrange(16**6):06X}"
        callback = payload.get("biz_opaque_callback_data")
        task = asyncio.get_running_loop().create_task(self._statuses(wamid, wa_id, kind, payload, callback))
        self.demo._tasks.append(task)
        return httpx.Response(
            200,
            json={
                "messaging_product": "whatsapp",
                "contacts": [{"input": payload["to"], "wa_id": wa_id}],
                "messages": [{"id": wamid}],
            },
        )

    async def _statuses(self, wamid: str, wa_id: str, kind: str, payload: dict, callback: str | None) -> None:
        now = int(time.time())
        base = {"id": wamid, "recipient_id": wa_id, "biz_opaque_callback_data": callback}
        fail = None
        if kind == "experiment" and payload.get("type") == "template":
            fail = {
                "code": 130472,
                "title": "User's number is part of an experiment",
                "message": "User's number is part of an experiment",
                "error_data": {
                    "details": "Failed to send message because this user's phone number is part "
                    "of an experiment"
                },
            }
        elif kind == "undeliverable":
            fail = {
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Message Undeliverable."},
            }
        if fail:
            statuses = [{**base, "status": "failed", "timestamp": str(now + 1), "errors": [fail]}]
        else:
            statuses = [
                {**base, "status": "sent", "timestamp": str(now)},
                {**base, "status": "delivered", "timestamp": str(now + 1)},
                {**base, "status": "read", "timestamp": str(now + 3)},
            ]
            self.rng.shuffle(statuses)  # out of order
            statuses.append(self.rng.choice(statuses))  # and a duplicate
        for st in statuses:
            await asyncio.sleep(self.rng.uniform(0.05, 0.6) / self.speed)
            await self.demo_post(_envelope({"statuses": [st]}))
            if st["status"] == "failed":
                self.demo.stats["failed_webhooks"] += 1

    async def demo_post(self, body: bytes) -> None:
        assert self.demo._http is not None
        signature = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        with contextlib.suppress(aiohttp.ClientError):
            async with self.demo._http.post(
                f"{self.demo.url}{WEBHOOK_PATH}",
                data=body,
                headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
            ) as resp:
                await resp.read()


async def start_demo_sidecar(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    database_url: str | None = None,
    seed: int = 1,
    speed: float = 1.0,
    app_secret: str = "demo-app-secret",
) -> DemoSidecar:
    """Start the sidecar with a fake Meta and simulated traffic; ``stop()`` cleans everything up."""
    tmpdir = None
    if database_url is None:
        tmpdir = tempfile.mkdtemp(prefix="acd-whatsapp-demo-")
        database_url = f"sqlite+aiosqlite:///{tmpdir}/whatsapp.sqlite3"
    config = WhatsAppConfig(
        database_url=database_url,
        verify_token="demo-verify-token",
        app_secret=app_secret,
        access_token="demo-access-token",
        phone_number_id=PNID,
        graph_url="https://graph.facebook.invalid/v24.0",
        admin_token=ADMIN_TOKEN,
        agent_tokens=dict(AGENT_TOKENS),
        templates=TEMPLATES,
    )
    rng = random.Random(seed)
    holder: dict[str, _FakeMeta] = {}
    transport = httpx.MockTransport(lambda request: holder["meta"].handle(request))
    service = WhatsAppService(config, graph_transport=transport, backoff_scale=0.05 / max(speed, 0.01))
    await service.start()
    runner = web.AppRunner(service.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server else port  # type: ignore[union-attr]
    demo = DemoSidecar(f"http://{host}:{bound}", service, runner, tmpdir)
    demo._http = aiohttp.ClientSession()
    meta = holder["meta"] = _FakeMeta(demo, app_secret, rng, speed)
    demo._tasks.append(asyncio.create_task(_traffic(demo, meta, rng, speed)))
    log.info("demo WhatsApp sidecar started", extra={"url": demo.url})
    return demo


async def _traffic(demo: DemoSidecar, meta: _FakeMeta, rng: random.Random, speed: float) -> None:
    assert demo._http is not None
    http = demo._http
    seq = 0
    try:
        # Carla wrote 26 h ago: her conversation's window is closed.
        old = int(time.time()) - 26 * 3600
        for wa_id, name, kind in CUSTOMERS:
            ts = old if kind == "window_closed" else int(time.time())
            seq += 1
            body = _envelope(
                {
                    "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                    "messages": [
                        {
                            "from": wa_id,
                            "id": f"wamid.IN{seq:06d}",
                            "timestamp": str(ts),
                            "type": "text",
                            "text": {"body": rng.choice(LINES)},
                        }
                    ],
                }
            )
            await meta.demo_post(body)
            if kind != "window_closed" and rng.random() < 0.5:
                await meta.demo_post(body)  # Meta retried: a duplicate
            demo.stats["inbound"] += 1
        await asyncio.sleep(0.2 / speed)
        await meta.demo_post(
            _envelope(
                {
                    "errors": [
                        {
                            "code": 130429,
                            "title": "Rate limit hit",
                            "message": "Rate limit hit",
                            "error_data": {"details": "Demo: throughput reached"},
                        }
                    ]
                }
            )
        )
        round_ = 0
        while True:
            round_ += 1
            async with http.get(
                f"{demo.url}/api/conversations", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ) as resp:
                conversations = (await resp.json())["conversations"]
            for conv in conversations:
                agent = "alice" if conv["id"] % 2 else "bob"
                kind = meta.kind.get(conv["wa_id"] or "", "ok")
                if kind == "experiment" and round_ == 1:
                    payload: dict[str, Any] = {
                        "type": "template",
                        "template": {"name": "promo_semana", "language": "pt_BR"},
                    }
                else:
                    payload = {"type": "text", "text": rng.choice(REPLIES)}
                async with http.post(
                    f"{demo.url}/api/conversations/{conv['id']}/messages",
                    json=payload,
                    headers={"Authorization": f"Bearer {AGENT_TOKENS[agent]}"},
                ) as resp:
                    if resp.status in (202, 422):
                        demo.stats["sent"] += 1
                await asyncio.sleep(rng.uniform(0.2, 1.0) / speed)
            # A customer writes again (sometimes delivered late, with an older timestamp).
            wa_id, name, kind = rng.choice([c for c in CUSTOMERS if c[2] != "window_closed"])
            seq += 1
            ts = int(time.time()) - (rng.choice([0, 0, 0, 20]))
            await meta.demo_post(
                _envelope(
                    {
                        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                        "messages": [
                            {
                                "from": wa_id,
                                "id": f"wamid.IN{seq:06d}",
                                "timestamp": str(ts),
                                "type": "text",
                                "text": {"body": rng.choice(LINES)},
                            }
                        ],
                    }
                )
            )
            demo.stats["inbound"] += 1
            await asyncio.sleep(rng.uniform(1.0, 3.0) / speed)
    except asyncio.CancelledError:
        raise
    except Exception:  # the demo must never take the controller demo down
        log.exception("demo WhatsApp traffic stopped")
