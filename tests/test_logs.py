"""Log lines carry their facts as fields, in both formats, and never leak a secret."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from controller.logs import RedactingFilter, add_secret, clear_secrets, redact, setup_logging

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """Install our handler on a private stream; restore the root logger afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buf = io.StringIO()
    yield buf, logging.getLogger("controller.telephony")
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    clear_secrets()


OFFER = {"call": "c-17", "queue": "support", "agent": "alice", "outcome": "rejected", "cause": 21}


def test_text_format_line(capture) -> None:
    buf, log = capture
    setup_logging("INFO", "text", stream=buf)
    log.info("offer rang", extra=OFFER)
    line = buf.getvalue().rstrip("\n")
    assert re.fullmatch(
        TS
        + r" INFO controller\.telephony offer rang"
        + " call=c-17 queue=support agent=alice outcome=rejected cause=21",
        line,
    ), line


def test_text_format_quotes_values_with_spaces(capture) -> None:
    buf, log = capture
    setup_logging("DEBUG", "text", stream=buf)
    log.debug("caller waiting", extra={"caller": "Maria Lopez", "empty": "", "none": None, "ok": True})
    line = buf.getvalue()
    assert 'caller="Maria Lopez"' in line
    assert 'empty=""' in line
    assert "none=-" in line
    assert "ok=true" in line


def test_level_filters(capture) -> None:
    buf, log = capture
    setup_logging("warning", "text", stream=buf)
    log.info("quiet")
    log.warning("loud")
    assert "quiet" not in buf.getvalue()
    assert " WARNING controller.telephony loud" in buf.getvalue()


def test_json_format(capture) -> None:
    buf, log = capture
    setup_logging("INFO", "json", stream=buf)
    log.info("offer %s", "rang", extra=OFFER | {"ring_time": 3.5, "tags": ["vip"]})
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert re.fullmatch(TS, obj.pop("ts"))
    assert obj == {
        "level": "INFO",
        "logger": "controller.telephony",
        "msg": "offer rang",
        **OFFER,
        "ring_time": 3.5,
        "tags": ["vip"],
    }


def test_json_exception(capture) -> None:
    buf, log = capture
    setup_logging("INFO", "json", stream=buf)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("handler failed", extra={"call": "c-1"})
    obj = json.loads(buf.getvalue())
    assert obj["level"] == "ERROR"
    assert obj["call"] == "c-1"
    assert "RuntimeError: boom" in obj["exc"]


def test_text_exception_follows_line(capture) -> None:
    buf, log = capture
    setup_logging("INFO", "text", stream=buf)
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("handler failed")
    first, *rest = buf.getvalue().splitlines()
    assert first.endswith("handler failed")
    assert rest[0].startswith("Traceback")
    assert rest[-1] == "ValueError: bad"


def test_setup_twice_replaces_our_handler(capture) -> None:
    buf, log = capture
    setup_logging("INFO", "text", stream=buf)
    setup_logging("INFO", "json", stream=buf)
    log.info("once")
    assert len(buf.getvalue().splitlines()) == 1
    json.loads(buf.getvalue())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        setup_logging("INFO", "xml")
    with pytest.raises(ValueError):
        setup_logging("LOUD", "text")


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_never_appear(capture, fmt: str) -> None:
    buf, log = capture
    setup_logging("DEBUG", fmt, secrets=["hunter22", SecretStr("dbpass99"), None, ""], stream=buf)
    log.info("connecting to %s", "ws://127.0.0.1:8088/ari/events?app=acd&api_key=acd:hunter22")
    log.info("db at postgresql+asyncpg://acd:dbpass99@db:5432/acd")
    log.info("login", extra={"password": "pw-in-extra", "url": "http://u:urlpass@h/x", "pw": SecretStr("s3")})
    log.info("nested", extra={"headers": {"Authorization": "Basic YWNkOmh1bnRlcjIy", "token": "tok123"}})
    log.info("literal secret %s somewhere", "hunter22")
    log.info("auth", extra={"hdr": "Authorization: Bearer abc.def.ghi"})
    try:
        raise RuntimeError("failed with password=hunter22")
    except RuntimeError:
        log.exception("boom")
    out = buf.getvalue()
    for secret in (
        "hunter22",
        "dbpass99",
        "pw-in-extra",
        "urlpass",
        "YWNkOmh1bnRlcjIy",
        "tok123",
        "abc.def.ghi",
    ):
        assert secret not in out, (secret, out)
    assert "s3" not in out.replace("s3cret", "")
    # what is left is still useful
    assert "127.0.0.1:8088/ari/events?app=acd" in out
    assert "postgresql+asyncpg://acd:***@db:5432/acd" in out
    if fmt == "json":
        for line in out.splitlines():
            json.loads(line)


def test_redact_patterns() -> None:
    assert redact("GET /ari/events?api_key=acd:pw&app=acd") == "GET /ari/events?api_key=***&app=acd"
    assert redact("https://user:pa55@host/path") == "https://user:***@host/path"
    assert redact('{"password": "x1", "n": 1}') == '{"password": "***", "n": 1}'
    assert redact("ACD_ARI_PASSWORD=abc") == "ACD_ARI_PASSWORD=***"
    assert redact("Authorization: Basic YWJjOmRlZg==") == "Authorization: Basic ***"
    harmless = "offer rang call=c1 queue=support agent=alice outcome=rejected cause=21"
    assert redact(harmless) == harmless
    assert redact("sqlite+aiosqlite:///./data/acd.sqlite3") == "sqlite+aiosqlite:///./data/acd.sqlite3"


def test_registered_secret_is_masked_anywhere() -> None:
    try:
        add_secret("Zq9-very-secret")
        add_secret("ab")  # too short to mask safely: ignored
        assert redact("x Zq9-very-secret y ab") == "x *** y ab"
    finally:
        clear_secrets()


def test_redacting_filter_for_foreign_handlers() -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test.foreign")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.info("url %s", "http://a:b-secret@h/")
    finally:
        log.removeHandler(handler)
    assert buf.getvalue() == "url http://a:***@h/\n"


def test_short_secrets_are_refused_and_never_mangle_words() -> None:
    try:
        assert add_secret("none") is False  # masking "none" everywhere would point at it
        assert redact("nonexistent queue none") == "nonexistent queue none"
        assert add_secret("Zq9-very-secret") is True
        # a registered secret is masked as a token, not inside a longer word
        assert redact("token Zq9-very-secret, xZq9-very-secretx") == "token ***, xZq9-very-secretx"
        assert redact("ws://h/ari?api_key=acd:Zq9-very-secret&x=1") == "ws://h/ari?api_key=***&x=1"
        # known secret fields and URL passwords are masked whatever their length
        assert redact("password=none") == "password=***"
        assert redact("http://acd:none@db/x") == "http://acd:***@db/x"
    finally:
        clear_secrets()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_control_characters_are_escaped_in_every_part_of_a_line(capture, fmt) -> None:
    buf, log = capture
    setup_logging("INFO", fmt, stream=buf)
    nasty = "\x1b[31mRED\x1b[0m\x00\bback\nforged line\x9b"
    log.info("path %s", nasty, extra={"path": nasty, "agent": "al\x1bice"})
    try:
        raise ValueError(nasty)
    except ValueError:
        log.exception("failed %s", nasty)
    out = buf.getvalue()
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", out), repr(out)
    lines = out.splitlines()
    if fmt == "json":
        assert all(json.loads(line) for line in lines)
        assert json.loads(lines[0])["path"] == nasty  # escaped, not lost
    else:  # each record's own line stays one line; the traceback follows on its lines
        assert len(re.findall(r"\\x1b|\\u001b", lines[0])) == 5  # message (2), path (2), agent (1)
        assert re.match(TS + " ERROR controller.telephony failed ", lines[1])
        assert lines[2] == "Traceback (most recent call last):"
