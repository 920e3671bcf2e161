"""Agent sends through Meta (mocked with respx): sync errors, retries, unknown outcomes, the 24 h window."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from controller.whatsapp.errors import NOT_SENT_CODE
from controller.whatsapp.graph import GraphClient, NotSent, Unknown, text_payload
from tests.timing import until
from tests.whatsapp.conftest import (
    ACCESS_TOKEN,
    MARIA,
    SEND_URL,
    TOKENS,
    WAMID_REPLY,
    accept,
    fixture_bytes,
)


def sync_error(name: str, status: int = 400) -> httpx.Response:
    return httpx.Response(status, content=fixture_bytes(name), headers={"Content-Type": "application/json"})


async def conversation(sc) -> int:
    await sc.deliver("webhook_inbound_text.json")
    [conv] = await sc.rows("SELECT id FROM wa_conversations")
    return conv["id"]


async def out_row(sc) -> dict:
    [row] = await sc.rows("SELECT * FROM wa_messages WHERE direction = 'out'")
    return row


async def _in_flight(sc) -> bool:
    return bool((await out_row(sc))["in_flight"])


async def test_text_send_stores_the_wamid_and_sends_meta_the_right_request(sidecar) -> None:
    cid = await conversation(sidecar)
    route = accept(sidecar.meta)
    status, body = await sidecar.send_text(cid, "Oi Maria! Verifiquei: o pedido 48213 sai para entrega hoje.")
    assert status == 202
    msg = body["message"]
    assert msg["status"] == "pending" and msg["direction"] == "out" and msg["agent_id"] == "alice"
    await sidecar.service.drain()
    request = route.calls.last.request
    assert request.url == SEND_URL
    assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    sent = json.loads(request.content)
    expected = json.loads(fixture_bytes("send_request_text.json"))
    expected["biz_opaque_callback_data"] = msg["id"]  # the local id, for early statuses
    assert sent == expected
    row = await out_row(sidecar)
    assert row["wamid"] == WAMID_REPLY and row["status"] == "pending" and not row["in_flight"]
    [conv] = await sidecar.rows("SELECT assigned_agent FROM wa_conversations")
    assert conv["assigned_agent"] == "alice"  # the agent who answers takes the conversation


async def test_template_send_matches_meta_shape_and_is_allowed_outside_the_window(sidecar) -> None:
    cid = await conversation(sidecar)
    sidecar.clock.advance(30 * 3600)
    route = accept(sidecar.meta)
    template = json.loads(fixture_bytes("send_request_template.json"))["template"]
    status, body = await sidecar.api(
        "POST",
        f"/api/conversations/{cid}/messages",
        TOKENS["alice"],
        json={"type": "template", "template": {**template, "language": "pt_BR"}},
    )
    assert status == 202, body
    await sidecar.service.drain()
    sent = json.loads(route.calls.last.request.content)
    expected = json.loads(fixture_bytes("send_request_template.json"))
    expected["biz_opaque_callback_data"] = body["message"]["id"]
    assert sent == expected


async def test_free_text_outside_24h_is_refused_before_calling_meta(sidecar) -> None:
    cid = await conversation(sidecar)
    route = accept(sidecar.meta)
    sidecar.clock.advance(26 * 3600)
    status, body = await sidecar.send_text(cid, "Oi de novo")
    assert status == 422
    assert not route.called
    error = body["error"]
    assert error["code"] == 131047 and error["source"] == "local"
    assert "26 h ago" in error["details"]
    assert "janela de 24 horas fechada" in error["explanation"]["pt_BR"]["title"]
    row = await out_row(sidecar)
    assert row["status"] == "failed" and row["error_code"] == 131047  # shown on the bubble too


async def test_window_is_24h_from_the_last_inbound(sidecar) -> None:
    cid = await conversation(sidecar)
    accept(sidecar.meta)
    sidecar.clock.now = 1786629725 + 24 * 3600 - 61
    status, _ = await sidecar.send_text(cid, "ainda dentro")
    assert status == 202


async def test_sync_132001_is_shown_at_once_explained(sidecar) -> None:
    cid = await conversation(sidecar)
    sidecar.meta.post(SEND_URL).mock(
        return_value=sync_error("send_error_sync_132001_template_not_found.json", 404)
    )
    status, body = await sidecar.api(
        "POST",
        f"/api/conversations/{cid}/messages",
        TOKENS["alice"],
        json={"type": "template", "template": {"name": "atualizacao_pedido", "language": "pt_BR"}},
    )
    assert status == 202
    await sidecar.service.drain()
    row = await out_row(sidecar)
    assert row["status"] == "failed" and row["error_code"] == 132001 and row["error_source"] == "send"
    assert row["error_details"] == "template name (atualizacao_pedido) does not exist in pt_BR"
    assert row["error_fbtrace_id"] == "AZx3kPq9L2mNvB7tYw1sRcd"
    assert row["error_message"] == "(#132001) Template name does not exist in the translation"
    assert sidecar.meta.calls.call_count == 1  # permanent: no retry
    _, history = await sidecar.api("GET", f"/api/conversations/{cid}/messages", TOKENS["alice"])
    error = history["messages"][-1]["error"]
    assert error["explanation"]["pt_BR"]["title"] == "Template não encontrado neste idioma"
    assert await sidecar.rows("SELECT id FROM wa_channel_alerts") == []


async def test_131056_is_retried_with_4_pow_x_backoff_then_accepted(make_sidecar) -> None:
    sc = await make_sidecar()
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    sc.service.sender._sleep = fake_sleep
    sc.service.sender.backoff_scale = 1.0
    cid = await conversation(sc)
    sc.meta.post(SEND_URL).mock(
        side_effect=[
            sync_error("send_error_sync_131056_pair_rate_limit.json"),
            sync_error("send_error_sync_131056_pair_rate_limit.json"),
            httpx.Response(200, json={"messages": [{"id": WAMID_REPLY}]}),
        ]
    )
    status, _ = await sc.send_text(cid, "oi")
    assert status == 202
    await sc.service.drain()
    assert waits == [4.0, 16.0]
    row = await out_row(sc)
    assert row["wamid"] == WAMID_REPLY and row["status"] == "pending" and row["attempts"] == 3
    assert sc.service.metrics.get("send_retried", code=131056) == 2


async def test_131056_gives_up_after_its_retries_and_tells_the_agent(sidecar) -> None:
    cid = await conversation(sidecar)
    sidecar.meta.post(SEND_URL).mock(return_value=sync_error("send_error_sync_131056_pair_rate_limit.json"))
    await sidecar.send_text(cid, "oi")
    await sidecar.service.drain()
    assert sidecar.meta.calls.call_count == 4  # first try + 3 retries
    row = await out_row(sidecar)
    assert row["status"] == "failed" and row["error_code"] == 131056


@pytest.mark.parametrize(("code", "calls"), [(131000, 3), (130429, 5), (131016, 4)])
async def test_transient_codes_retry_a_few_times(sidecar, code: int, calls: int) -> None:
    cid = await conversation(sidecar)
    err = {"error": {"message": "x", "type": "OAuthException", "code": code, "fbtrace_id": "T1"}}
    sidecar.meta.post(SEND_URL).mock(return_value=httpx.Response(500 if code == 131000 else 400, json=err))
    await sidecar.send_text(cid, "oi")
    await sidecar.service.drain()
    assert sidecar.meta.calls.call_count == calls
    row = await out_row(sidecar)
    assert row["status"] == "failed" and row["error_code"] == code and row["error_fbtrace_id"] == "T1"


async def test_token_expired_190_fails_the_message_and_alerts_admins(sidecar) -> None:
    cid = await conversation(sidecar)
    sidecar.meta.post(SEND_URL).mock(return_value=sync_error("send_error_sync_190_token_expired.json", 401))
    await sidecar.send_text(cid, "oi")
    await sidecar.service.drain()
    assert sidecar.meta.calls.call_count == 1
    row = await out_row(sidecar)
    assert row["status"] == "failed" and row["error_code"] == 190
    assert row["error_fbtrace_id"] == "CdE4fG5hI6jK7lM8nO9pQr0"
    [alert] = await sidecar.rows("SELECT * FROM wa_channel_alerts")
    assert alert["code"] == 190 and alert["retry_class"] == "C" and alert["source"] == "send"
    assert "Access token expired" in json.dumps(
        (await sidecar.api("GET", "/api/alerts"))[1]["alerts"][0]["explanation"]["en"]
    )


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("slow"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.WriteError("broken pipe"),
        httpx.WriteTimeout("slow"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_failure_after_the_request_left_is_unknown_and_never_resent(sidecar, failure) -> None:
    cid = await conversation(sidecar)
    sidecar.meta.post(SEND_URL).mock(side_effect=failure)
    await sidecar.send_text(cid, "oi")
    await sidecar.service.drain()
    assert sidecar.meta.calls.call_count == 1
    row = await out_row(sidecar)
    assert row["status"] == "unknown" and row["wamid"] is None
    _, body = await sidecar.api("GET", f"/api/conversations/{cid}/messages")
    notice = body["messages"][-1]["notice"]
    assert notice["pt_BR"]["title"] == "Resultado do envio desconhecido"
    # A late status (it had been accepted after all) moves it on, found by callback data.
    late = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "112233445566778"},
                            "statuses": [
                                {
                                    "id": "wamid.late",
                                    "status": "sent",
                                    "timestamp": "1786629900",
                                    "recipient_id": MARIA,
                                    "biz_opaque_callback_data": row["id"],
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    await sidecar.deliver(json.dumps(late).encode())
    row = await out_row(sidecar)
    assert row["status"] == "sent" and row["wamid"] == "wamid.late"


async def test_unknown_codes_fall_back_to_metas_title_and_details(sidecar) -> None:
    cid = await conversation(sidecar)
    err = {
        "error": {
            "message": "(#999999) Brand new",
            "type": "OAuthException",
            "code": 999999,
            "error_data": {"details": "Something Meta invented"},
            "fbtrace_id": "Z",
        }
    }
    sidecar.meta.post(SEND_URL).mock(return_value=httpx.Response(400, json=err))
    await sidecar.send_text(cid, "oi")
    await sidecar.service.drain()
    _, body = await sidecar.api("GET", f"/api/conversations/{cid}/messages")
    error = body["messages"][-1]["error"]
    assert error["code"] == 999999 and error["explanation"]["known"] is False
    assert error["explanation"]["en"]["title"] == "(#999999) Brand new"
    assert "Something Meta invented" in error["explanation"]["pt_BR"]["explanation"]


async def test_messages_of_a_conversation_go_out_one_after_the_other(sidecar) -> None:
    cid = await conversation(sidecar)
    seen: list[str] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["text"]["body"])
        return httpx.Response(200, json={"messages": [{"id": f"wamid.seq.{len(seen)}"}]})

    sidecar.meta.post(SEND_URL).mock(side_effect=respond)
    for i in range(5):
        await sidecar.send_text(cid, f"m{i}")
    await sidecar.service.drain()
    assert seen == [f"m{i}" for i in range(5)]


async def test_bad_send_requests_get_clear_errors(sidecar) -> None:
    cid = await conversation(sidecar)
    for payload, fragment in (
        ({"type": "text", "text": ""}, "non-empty"),
        ({"type": "video"}, 'type must be "text" or "template"'),
        ({"type": "template", "template": {"language": "pt_BR"}}, "template.name"),
        ({"type": "text", "text": "x" * 5000}, "longer than 4096"),
    ):
        status, body = await sidecar.api(
            "POST", f"/api/conversations/{cid}/messages", TOKENS["alice"], json=payload
        )
        assert status == 400 and fragment in body["error"], payload
    assert await sidecar.rows("SELECT id FROM wa_messages WHERE direction = 'out'") == []


async def test_interrupted_send_becomes_unknown_after_a_restart(make_sidecar) -> None:
    """Crash while Meta was being called: nobody knows if it went out, so no blind resend."""
    first = await make_sidecar()
    cid = await conversation(first)
    import asyncio

    hang = asyncio.Event()

    async def never(request):
        await hang.wait()
        return httpx.Response(200, json={"messages": [{"id": "wamid.never"}]})

    first.meta.post(SEND_URL).mock(side_effect=never)
    await first.send_text(cid, "oi")
    await until(lambda: _in_flight(first), what="the send is in flight")
    await first.service.sender.close()  # the crash
    second = await make_sidecar()
    row = await out_row(second)
    assert row["status"] == "unknown" and not row["in_flight"]
    hang.set()


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("slow"),
        httpx.PoolTimeout("x"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_connection_never_made_is_retried_with_backoff_then_accepted(make_sidecar, failure) -> None:
    """The request never left, so resending cannot duplicate it: retried like a transient code."""
    sc = await make_sidecar()
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    sc.service.sender._sleep = fake_sleep
    sc.service.sender.backoff_scale = 1.0
    cid = await conversation(sc)
    sc.meta.post(SEND_URL).mock(
        side_effect=[failure, failure, httpx.Response(200, json={"messages": [{"id": WAMID_REPLY}]})]
    )
    status, _ = await sc.send_text(cid, "oi")
    assert status == 202
    await sc.service.drain()
    assert sc.meta.calls.call_count == 3 and waits == [1.0, 2.0]
    row = await out_row(sc)
    assert row["wamid"] == WAMID_REPLY and row["status"] == "pending" and row["error_code"] is None
    assert sc.service.metrics.get("send_retried", code="network") == 2
    assert sc.service.metrics.get("send_unknown") == 0


async def test_meta_unreachable_fails_the_message_as_not_sent_after_the_retries(sidecar) -> None:
    cid = await conversation(sidecar)
    sidecar.meta.post(SEND_URL).mock(side_effect=httpx.ConnectError("[Errno 111] Connection refused"))
    await sidecar.send_text(cid, "oi")
    await sidecar.service.drain()
    assert sidecar.meta.calls.call_count == 4  # first try + 3 retries
    row = await out_row(sidecar)
    assert row["status"] == "failed" and row["error_code"] == NOT_SENT_CODE and row["wamid"] is None
    assert "Connection refused" in row["error_message"]
    _, body = await sidecar.api("GET", f"/api/conversations/{cid}/messages")
    error = body["messages"][-1]["error"]
    assert error["explanation"]["pt_BR"]["title"] == "Meta inacessível: mensagem não enviada"
    assert "no risk of a duplicate" in error["explanation"]["en"]["action"]
    assert body["messages"][-1]["notice"] is None
    assert sidecar.service.metrics.get("send_failed", code="network", retry_class="T") == 1
    assert sidecar.service.metrics.get("send_unknown") == 0


async def test_graph_client_tells_never_sent_from_maybe_sent_on_real_sockets() -> None:
    """Connection refused -> NotSent; request read, connection closed without answer -> Unknown."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = GraphClient(f"http://127.0.0.1:{closed_port}/v24.0", "1", "t", timeout=5)
    try:
        result = await client.send(text_payload(MARIA, "oi", "msg:1"))
    finally:
        await client.aclose()
    assert isinstance(result, NotSent) and "ConnectError" in result.reason

    got_request = asyncio.Event()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        got_request.set()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = GraphClient(f"http://127.0.0.1:{port}/v24.0", "1", "t", timeout=5)
    try:
        result = await client.send(text_payload(MARIA, "oi", "msg:1"))
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert got_request.is_set()
    assert isinstance(result, Unknown) and "RemoteProtocolError" in result.reason
