"""The sidecar with simulated WhatsApp traffic, for ``acdctl demo``: no Meta account needed.

:func:`start_demo_sidecar` starts the real sidecar (temporary SQLite database, ephemeral port)
with an in-process fake Graph API (an ``httpx.MockTransport``) and a traffic loop: customers
write, simulated agents answer, Meta's fake answers and signed status webhooks come back out of
order and duplicated, and some sends fail the way they do in production:

- 130472 (marketing template to a customer in Meta's experiment), via a ``failed`` webhook;
- 131026 (undeliverable), via a ``failed`` webhook;
- 131047 (free text after 24 h), refused before calling Meta;
- 131056 (pair rate limit) once, then retried and accepted;
- 130429 as a channel-level ``value.errors`` alert.

The controller's demo shares its identity with it (same admin token, same agent tokens, the
panel's origin for CORS). People using the browser panel are ``panel_agents``: the traffic loop
never sends as them nor in their conversations; each gets two conversations of its own at start,
one whose 24-hour window is closed (free text is refused: send a template) and one open, with
earlier messages that failed (130472 on a marketing template, 131026).
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
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from sqlalchemy import select

from controller.store import reading
from controller.whatsapp.auth import Principal
from controller.whatsapp.models import Conversation
from controller.whatsapp.sender import SendError
from controller.whatsapp.service import WEBHOOK_PATH, WhatsAppConfig, WhatsAppService

__all__ = ["ADMIN_TOKEN", "AGENT_TOKENS", "TEMPLATES", "DemoSidecar", "start_demo_sidecar"]

log = logging.getLogger("controller.whatsapp.demo")

CV = Conversation.__table__

PNID = "100000000000001"
ADMIN_TOKEN = "demo-admin-token"
AGENT_TOKENS = {"alice": "demo-alice-token", "bob": "demo-bob-token"}
BOT_AGENTS = ["alice", "bob"]  # who answers when no other traffic agent is given
CUSTOMERS = [
    ("5511987654321", "Maria Souza", "ok"),
    ("5521998765432", "João Lima", "experiment"),  # marketing templates fail with 130472
    ("5531977776666", "Pedro Alves", "undeliverable"),  # 131026
    ("5541966665555", "Ana Costa", "rate_limited_once"),  # 131056, then accepted
    ("5551955554444", "Carla Dias", "window_closed"),  # last wrote 26 h ago: free text refused
]
PANEL_CUSTOMERS = [
    ("Beatriz Rocha", "Rafael Nunes"),
    ("Luana Martins", "Tiago Freitas"),
    ("Sofia Ribeiro", "Gustavo Pires"),
    ("Helena Barros", "Mateus Cardoso"),
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
FOLLOW_UPS = ["Alguma novidade?", "Ainda estou aguardando retorno.", "Consegue me ajudar hoje?"]

_EXPERIMENT = {
    "code": 130472,
    "title": "User's number is part of an experiment",
    "message": "User's number is part of an experiment",
    "error_data": {
        "details": "Failed to send message because this user's phone number is part of an experiment"
    },
}
_UNDELIVERABLE = {
    "code": 131026,
    "title": "Message undeliverable",
    "message": "Message undeliverable",
    "error_data": {"details": "Message Undeliverable."},
}


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


def _inbound(wa_id: str, name: str, wamid: str, ts: int, text: str) -> bytes:
    return _envelope(
        {
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [
                {"from": wa_id, "id": wamid, "timestamp": str(ts), "type": "text", "text": {"body": text}}
            ],
        }
    )


def _template(name: str, *params: str) -> dict[str, Any]:
    tpl: dict[str, Any] = {"name": name, "language": "pt_BR"}
    if params:
        tpl["components"] = [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}]
    return {"type": "template", "template": tpl}


@dataclass
class DemoSidecar:
    url: str
    service: WhatsAppService
    _runner: web.AppRunner
    _tmpdir: str | None
    admin_token: str = ADMIN_TOKEN
    agent_tokens: dict[str, str] = field(default_factory=dict, repr=False)  # plain tokens, when known
    panel_agents: list[str] = field(default_factory=list)
    traffic_agents: list[str] = field(default_factory=list)
    panel_conversations: dict[str, dict[str, int]] = field(default_factory=dict)  # agent -> {closed, open}
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _http: aiohttp.ClientSession | None = None
    stats: Counter = field(default_factory=Counter)

    def spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)  # a long demo must not keep every finished task
        return task

    def summary(self) -> str:
        m = self.service.metrics
        snap = m.snapshot()
        failures = {
            k.split('code="')[1].split('"')[0]: v
            for k, v in snap.items()
            if k.startswith("send_failed") and 'code="' in k
        }
        lines = [
            f"WhatsApp sidecar (simulated Meta) at {self.url}",
            f"  webhooks accepted {m.get('webhook_accepted')}, rejected "
            f"{sum(v for k, v in snap.items() if k.startswith('webhook_rejected'))}, "
            f"duplicates ignored {m.get('webhook_duplicates', kind='message')}",
            f"  customer messages {self.stats['inbound']}, agent replies {self.stats['sent']}, "
            f"refused (24 h window) {m.get('send_refused', reason='window_closed')}, "
            f"failed at once {dict(failures) or 0}, failed later by webhook {self.stats['failed_webhooks']}, "
            f"retried {sum(v for k, v in snap.items() if k.startswith('send_retried'))}",
        ]
        if self.agent_tokens:
            agent, token = next(iter(self.agent_tokens.items()))
            lines.append(
                f"  try ({agent}): curl -H 'Authorization: Bearer {token}' {self.url}/api/conversations"
            )
        return "\n".join(lines)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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
        # per customer, the fate of its next sends in order (then "ok"): seeded panel conversations
        self.script: dict[str, deque[str]] = {}
        self.categories = {t["name"]: t["category"] for t in demo.service.config.templates}

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
        fate = "ok"
        script = self.script.get(wa_id)
        if script:
            fate = script.popleft()
        elif kind == "undeliverable":
            fate = "131026"
        elif kind == "experiment" and self._marketing(payload):
            fate = "130472"
        self.count += 1
        wamid = f"wamid.DEMO{self.count:06d}{self.rng.randrange(16**6):06X}"
        callback = payload.get("biz_opaque_callback_data")
        self.demo.spawn(self._statuses(wamid, wa_id, fate, callback))
        return httpx.Response(
            200,
            json={
                "messaging_product": "whatsapp",
                "contacts": [{"input": payload["to"], "wa_id": wa_id}],
                "messages": [{"id": wamid}],
            },
        )

    def _marketing(self, payload: dict) -> bool:
        if payload.get("type") != "template":
            return False
        name = (payload.get("template") or {}).get("name")
        return self.categories.get(name, "MARKETING") == "MARKETING"  # unknown templates: assume promo

    async def _statuses(self, wamid: str, wa_id: str, fate: str, callback: str | None) -> None:
        now = int(time.time())
        base = {"id": wamid, "recipient_id": wa_id, "biz_opaque_callback_data": callback}
        fail = {"130472": _EXPERIMENT, "131026": _UNDELIVERABLE}.get(fate)
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
    admin_token: str = ADMIN_TOKEN,
    agent_token_hashes: Mapping[str, str] | None = None,
    agent_tokens: Mapping[str, str] | None = None,
    team: Iterable[str] | None = None,
    cors_origins: Iterable[str] = (),
    panel_agents: Iterable[str] = (),
    traffic_agents: Iterable[str] | None = None,
) -> DemoSidecar:
    """Start the sidecar with a fake Meta and simulated traffic; ``stop()`` cleans everything up.

    Identity: ``admin_token``, and agents' tokens as SHA-256 (``agent_token_hashes``, e.g. the
    queue file's ``token_sha256``) and/or plain (``agent_tokens``); with neither, the demo's own
    ``AGENT_TOKENS`` (alice, bob). ``team``: who sees unassigned conversations (default: every
    agent with a token). ``cors_origins``: the panel's origin(s). ``panel_agents``: people in the
    browser panel, never impersonated; each gets two seeded conversations (``panel_conversations``).
    ``traffic_agents``: who the simulation answers as (default: the agents with a token that are
    not panel agents, else alice and bob, who need no token since the loop sends in-process).
    """
    if agent_token_hashes is None and agent_tokens is None:
        agent_tokens = AGENT_TOKENS
    panel = list(dict.fromkeys(panel_agents))
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
        admin_token=admin_token,
        agent_token_hashes=dict(agent_token_hashes or {}),
        agent_tokens=dict(agent_tokens or {}),
        team=list(team or ()),
        cors_origins=list(cors_origins),
        templates=TEMPLATES,
    )
    if traffic_agents is None:
        traffic = [a for a in config.agent_token_hashes if a not in panel] or [
            a for a in BOT_AGENTS if a not in panel
        ]
    else:
        traffic = [a for a in traffic_agents if a not in panel]
    if not traffic:
        raise ValueError("the demo needs at least one traffic agent that is not a panel agent")
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
    demo = DemoSidecar(
        f"http://{host}:{bound}",
        service,
        runner,
        tmpdir,
        admin_token=admin_token,
        agent_tokens=dict(agent_tokens or {}),
        panel_agents=panel,
        traffic_agents=traffic,
    )
    demo._http = aiohttp.ClientSession()
    meta = holder["meta"] = _FakeMeta(demo, app_secret, rng, speed)
    try:
        await _seed_panel(demo, meta)
    except BaseException:
        await demo.stop()
        raise
    demo.spawn(_traffic(demo, meta, rng, speed))
    log.info(
        "demo WhatsApp sidecar started",
        extra={"url": demo.url, "panel_agents": panel, "traffic_agents": traffic},
    )
    return demo


async def _seed_panel(demo: DemoSidecar, meta: _FakeMeta) -> None:
    """Two conversations per panel agent: window closed; open with earlier failed sends."""
    service = demo.service
    now = int(time.time())
    for i, agent in enumerate(demo.panel_agents):
        closed_name, open_name = PANEL_CUSTOMERS[i % len(PANEL_CUSTOMERS)]
        closed_id, open_id = f"55119{7000 + 2 * i:04d}{i % 10:04d}", f"55119{7001 + 2 * i:04d}{i % 10:04d}"
        meta.kind[closed_id] = meta.kind[open_id] = "panel"
        # the open one's earlier sends: delivered, then 130472 (marketing template), then 131026
        meta.script[open_id] = deque(["ok", "130472", "131026"])
        await meta.demo_post(
            _inbound(
                closed_id,
                closed_name,
                f"wamid.PANEL{i:03d}A",
                now - 26 * 3600,
                "Boa tarde! Quero trocar o tamanho do tênis do pedido 51877.",
            )
        )
        await meta.demo_post(
            _inbound(
                open_id, open_name, f"wamid.PANEL{i:03d}B", now - 300, "Oi, recebi só parte do pedido 48213."
            )
        )
        await service.drain()
        conversations: dict[str, int] = {}
        async with service.changelog.unit() as u:
            rows = await u.conn.execute(
                select(CV.c.id, CV.c.wa_id).where(CV.c.wa_id.in_([closed_id, open_id]))
            )
            for cid, wa_id in rows.all():
                conv = await u.conversation(cid)
                assert conv is not None
                u.assign(conv, agent)
                conversations["closed" if wa_id == closed_id else "open"] = cid
        demo.panel_conversations[agent] = conversations
        # History written before the person signs in (the traffic loop never sends as them).
        principal = Principal("agent", agent)
        for body in (
            {"type": "text", "text": "Oi! Já estou verificando o que aconteceu com a entrega."},
            _template("promo_semana", "20"),
            {"type": "text", "text": "A outra parte sai amanhã pela transportadora; mando o rastreio."},
        ):
            await service.sender.submit(principal, conversations["open"], body)
            await service.sender.drain()  # in order: each send gets its answer before the next
    demo.stats["inbound"] += 2 * len(demo.panel_agents)


async def _conversations(demo: DemoSidecar) -> list[dict]:
    async with reading(demo.service.engine) as conn:
        rows = await conn.execute(select(CV.c.id, CV.c.wa_id, CV.c.assigned_agent).order_by(CV.c.id))
        return [dict(r) for r in rows.mappings()]


async def _reply(demo: DemoSidecar, conv: dict, agent: str, payload: dict) -> None:
    """Send as a traffic agent (in-process: no token needed), taking an unassigned conversation."""
    service = demo.service
    if conv["assigned_agent"] is None:
        async with service.changelog.unit() as u:
            row = await u.conversation(conv["id"])
            if row is None or row["assigned_agent"] is not None:
                return  # someone (a person in the panel) took it meanwhile
            u.assign(row, agent)
    try:
        status, _ = await service.sender.submit(Principal("agent", agent), conv["id"], payload)
    except SendError:
        return  # no longer ours
    if status in (202, 422):
        demo.stats["sent"] += 1


async def _traffic(demo: DemoSidecar, meta: _FakeMeta, rng: random.Random, speed: float) -> None:
    assert demo._http is not None
    seq = 0
    traffic = demo.traffic_agents
    try:
        # Carla wrote 26 h ago: her conversation's window is closed.
        old = int(time.time()) - 26 * 3600
        for wa_id, name, kind in CUSTOMERS:
            ts = old if kind == "window_closed" else int(time.time())
            seq += 1
            body = _inbound(wa_id, name, f"wamid.IN{seq:06d}", ts, rng.choice(LINES))
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
            for conv in await _conversations(demo):
                owner = conv["assigned_agent"]
                if owner is not None and owner not in traffic:
                    continue  # a panel agent's (or anyone else's): never touched
                if meta.kind.get(conv["wa_id"] or "") == "panel":
                    continue
                agent = owner or traffic[conv["id"] % len(traffic)]
                kind = meta.kind.get(conv["wa_id"] or "", "ok")
                if kind == "experiment" and round_ == 1:
                    payload: dict[str, Any] = _template("promo_semana", "15")
                elif round_ % 4 == 0:
                    payload = _template("atualizacao_pedido", str(48000 + conv["id"]))
                else:
                    payload = {"type": "text", "text": rng.choice(REPLIES)}
                await _reply(demo, conv, agent, payload)
                await asyncio.sleep(rng.uniform(0.2, 1.0) / speed)
            # A customer writes again (sometimes delivered late, with an older timestamp).
            wa_id, name, kind = rng.choice([c for c in CUSTOMERS if c[2] != "window_closed"])
            seq += 1
            ts = int(time.time()) - (rng.choice([0, 0, 0, 20]))
            await meta.demo_post(_inbound(wa_id, name, f"wamid.IN{seq:06d}", ts, rng.choice(LINES)))
            demo.stats["inbound"] += 1
            # Now and then a panel agent's open customer asks again (the person sees it arrive).
            if demo.panel_agents and round_ % 5 == 0:
                i = rng.randrange(len(demo.panel_agents))
                open_name = PANEL_CUSTOMERS[i % len(PANEL_CUSTOMERS)][1]
                seq += 1
                await meta.demo_post(
                    _inbound(
                        f"55119{7001 + 2 * i:04d}{i % 10:04d}",
                        open_name,
                        f"wamid.IN{seq:06d}",
                        int(time.time()),
                        rng.choice(FOLLOW_UPS),
                    )
                )
                demo.stats["inbound"] += 1
            await asyncio.sleep(rng.uniform(1.0, 3.0) / speed)
    except asyncio.CancelledError:
        raise
    except Exception:  # the demo must never take the controller demo down
        log.exception("demo WhatsApp traffic stopped")
