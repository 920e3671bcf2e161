"""Structured logging for admins: one line per event, greppable, with secrets scrubbed.

Call sites log a short message and put the facts in ``extra``::

    log.info("offer rang", extra={"call": call_id, "queue": "support", "agent": "alice"})

Text format (default)::

    2026-11-25T17:00:00.123Z INFO controller.telephony offer rang call=c1 queue=support agent=alice

JSON format: one object per line with ``ts``, ``level``, ``logger``, ``msg`` and the extra fields.
Every line goes through :func:`redact`, so passwords in URLs, ``api_key=...`` pairs and any
value registered with :func:`add_secret` (the ARI password, ...) never reach a log file.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic import SecretStr

__all__ = [
    "JsonFormatter",
    "MalformedRequestFilter",
    "RedactingFilter",
    "TextFormatter",
    "add_secret",
    "clear_secrets",
    "escape_controls",
    "extra_fields",
    "redact",
    "quiet_malformed_requests",
    "setup_logging",
]

MASK = "***"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/\s:@]*):(?P<pw>[^/\s@]+)@"
)
_SECRET_WORDS = r"(?:api[_-]?key|apikey|passw(?:or)?d|pwd|secret|token|access[_-]?key|client[_-]?secret)"
# ``api_key=abc``, ``password: abc``, ``"token": "abc"``, ``?apikey=abc&x=1``
_KEY_VALUE = re.compile(
    rf"(?P<key>[\w.\-]*{_SECRET_WORDS}[\w\-]*)(?P<q1>[\"']?)(?P<sep>\s*[=:]\s*)(?P<q2>[\"']?)"
    r"(?P<value>(?!\*\*\*)[^\s\"'&,;}\]]+)",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|digest|token)\s+)?)"
    r"(?P<value>(?!\*\*\*)[^\s\"',}]+)",
    re.IGNORECASE,
)
# Extra fields whose whole value is a secret, whatever it looks like.
_SECRET_KEY = re.compile(
    rf"^[\w.\-]*(?:{_SECRET_WORDS}|authorization|cookie|credentials?)[\w\-]*$", re.IGNORECASE
)

MIN_SECRET = 8  # shorter values are common words or fragments: masking them would mangle lines

_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None  # registered secrets as whole tokens, longest first
_secrets_lock = threading.Lock()
_EDGE = r"A-Za-z0-9"  # a secret counts only where it is not part of a longer word


def add_secret(value: str | SecretStr | None) -> bool:
    """Register a literal secret (e.g. the ARI password) to be masked where it appears as a token.

    Refused (returns False) when shorter than :data:`MIN_SECRET`: masking "none" would turn
    "nonexistent" into "***existent" and point at the secret. Such a secret is still masked
    where it is a known secret field or sits in a URL, like every other.
    """
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value or len(value) < MIN_SECRET:
        return False
    global _secret_re
    with _secrets_lock:
        _secrets.add(value)
        alternatives = "|".join(re.escape(v) for v in sorted(_secrets, key=len, reverse=True))
        _secret_re = re.compile(rf"(?<![{_EDGE}])(?:{alternatives})(?![{_EDGE}])")
    return True


def clear_secrets() -> None:
    """Forget registered secrets (tests)."""
    global _secret_re
    with _secrets_lock:
        _secrets.clear()
        _secret_re = None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _escape_char(m: re.Match[str]) -> str:
    return f"\\x{ord(m[0]):02x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``ESC[31m`` -> ``\\x1b[31m``: a log line never carries terminal escapes, NULs or forged lines."""
    return (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_escape_char, text)


def redact(text: str) -> str:
    """Mask credentials in ``text``: URL passwords, secret-ish key=value pairs, registered secrets."""
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "=" not in text and ":" not in text:
        return text  # every pattern below needs a separator: the common, cheap case
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{m['q1']}{m['sep']}{m['q2']}{MASK}", text)
    return _AUTH_HEADER.sub(lambda m: f"{m['head']}{MASK}", text)


def _clean(key: str, value: Any) -> Any:
    """Redact one extra field's value, recursing into containers, keeping JSON types."""
    if isinstance(value, SecretStr) or (_SECRET_KEY.match(key) and value not in (None, "")):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(key, v) for v in value]
    return redact(str(value))


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, in the order they were given, already redacted."""
    fields = record.__dict__.items()
    return {k: _clean(k, v) for k, v in fields if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


_BARE = re.compile(r"^[^\s\"=\x00-\x1f\x7f-\x9f]+$")


def _text_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    text = str(value)
    return text if _BARE.match(text) else escape_controls(json.dumps(text, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``TS LEVEL logger message key=value ...``; tracebacks follow on their own lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = escape_controls(redact(record.getMessage()))
        parts = [_timestamp(record), record.levelname, record.name, message]
        parts += [f"{k}={_text_value(v)}" for k, v in extra_fields(record).items()]  # already clean
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + escape_controls(redact(self.formatException(record.exc_info)), keep_newlines=True)
        if record.stack_info:
            line += "\n" + escape_controls(redact(self.formatStack(record.stack_info)), keep_newlines=True)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in extra_fields(record).items():
            obj[key if key not in obj else f"extra_{key}"] = value
        if record.exc_info:
            obj["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            obj["stack"] = redact(self.formatStack(record.stack_info))
        line = json.dumps(obj, ensure_ascii=False, default=lambda v: redact(str(v)))
        # json escapes C0 controls already; DEL and C1 (0x9b starts a terminal escape) too
        return re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m[0]):04x}", line)


class RedactingFilter(logging.Filter):
    """For handlers we don't format ourselves: scrub the message in place before it is emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in extra_fields(record).items():
            setattr(record, key, value)
        return True


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs every request it cannot parse (a NUL in a header, ...) as an ERROR with a
    traceback: anyone could fill the log. Make it one WARNING line, at most one per ``interval``
    seconds, with how many were left out since the last one."""

    def __init__(self, interval: float = 10.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = self.clock()
        if now < self._next:
            self._suppressed += 1
            return False
        self._next = now + self.interval
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "malformed HTTP request refused with 400", ()
        record.exc_info, record.exc_text = None, None
        record.peer = str(peer)
        record.problem = " ".join(str(getattr(exc, "message", "") or exc).split())[:200]
        record.suppressed = self._suppressed
        self._suppressed = 0
        return True


def quiet_malformed_requests() -> None:
    """Install :class:`MalformedRequestFilter` on aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())


_HANDLER_MARK = "_acd_handler"


def setup_logging(
    level: str | int = "INFO",
    fmt: str = "text",
    *,
    secrets: Iterable[str | SecretStr | None] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Configure the root logger once per process (calling again replaces our handler).

    ``secrets`` are literal values (e.g. ``settings.secret_values()``) masked in every line.
    Returns the handler so tests can inspect or remove it.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    if isinstance(level, str):
        resolved = logging.getLevelName(level.strip().upper())
        if not isinstance(resolved, int):
            raise ValueError(f"unknown log level {level!r}")
        level = resolved
    for secret in secrets:
        add_secret(secret)  # too short ones are refused; Settings.short_secrets() names them
    quiet_malformed_requests()

    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    # Library chatter that drowns the routing story at INFO.
    for noisy in ("asyncio", "aiohttp.access", "httpx", "httpcore", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return handler
