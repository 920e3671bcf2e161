"""Settings (environment / .env) and the queue/agent TOML file.

Admins edit these by hand, so every mistake must come back as one readable line that names
the file, the key and what was expected, never a pydantic dump or a traceback. The engine
only sees the frozen dataclasses of :mod:`controller.acd.setup`; pydantic stays here.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.acd.setup import (
    INVITE_HEADERS,
    Acceptance,
    AcdSetup,
    AgentConfig,
    AgentStartState,
    DialplanTarget,
    HoldMode,
    Membership,
    QueueConfig,
    Strategy,
)

__all__ = [
    "ConfigError",
    "Settings",
    "load_agent_tokens",
    "load_supervisors",
    "load_settings",
    "load_setup",
    "redact_url",
    "setup_warnings",
]

ENV_PREFIX = "ACD_"
HOW_TO_SET_CONFIG = "pass --config PATH or set ACD_CONFIG"


class ConfigError(Exception):
    """Bad settings or config file: one human-readable line per problem.

    The CLI prints ``str(error)`` to stderr and exits with code 2; nothing starts.
    """

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if not self.problems:
            raise ValueError("ConfigError needs at least one problem")
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------- settings

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/\s:@]*):(?P<pw>[^/\s@]*)@")


# The store speaks asyncio: the plain forms people copy from elsewhere map to the async drivers.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
MIN_SECRET = 8  # shorter secrets are not masked by value in logs (see controller.logs.add_secret)


def redact_url(url: str) -> str:
    """``postgresql://acd:secret@db/acd`` -> ``postgresql://acd:***@db/acd`` (for printing)."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Process settings from ``ACD_*`` environment variables or a ``.env`` file.

    Queues and agents live in the TOML file named by ``config``; these are the things that
    differ per machine (where Asterisk is, credentials, ports).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",  # .env may be shared with other tools; load_settings checks ACD_* typos
        validate_default=True,
    )

    ari_url: str = "http://127.0.0.1:8088"
    ari_user: str = "acd"
    ari_password: SecretStr = SecretStr("")
    ari_app: str = "acd"
    config: Path = Path("./acd.toml")
    database_url: str = "sqlite+aiosqlite:///./data/acd.sqlite3"
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # history, HTTP API, events (issue: reporting API, metrics, events)
    admin_token: SecretStr = SecretStr("")
    service_level: float = Field(20.0, gt=0, allow_inf_nan=False)
    service_level_target: float = Field(80.0, gt=0, le=100, allow_inf_nan=False)  # % (wallboard)
    store_buffer: int = Field(100_000, ge=1)
    queue_log: str = ""
    events_url: str = ""
    events_secret: SecretStr = SecretStr("")
    # WhatsApp sidecar (controller.whatsapp); see README "WhatsApp sidecar"
    sidecar_host: str = "127.0.0.1"
    sidecar_port: int = Field(8081, ge=1, le=65535)
    wa_verify_token: SecretStr = SecretStr("")
    wa_app_secret: SecretStr = SecretStr("")
    wa_access_token: SecretStr = SecretStr("")
    wa_phone_number_id: str = ""
    wa_graph_url: str = "https://graph.facebook.com/v24.0"
    wa_team: str = ""
    wa_relay_url: str = ""
    wa_relay_secret: SecretStr = SecretStr("")
    wa_orphan_ttl_hours: float = Field(72.0, gt=0, allow_inf_nan=False)
    sidecar_cors_origins: str = ""  # the panel's origins (browsers calling the sidecar), comma-separated
    wa_templates_file: str = ""  # approved templates for the composer (JSON or TOML); checked at start

    # the agent panel (served by the controller at /)
    panel_whatsapp_url: str = ""  # the sidecar as the agents' browsers reach it; "" = no chat pane
    panel_language: str = "pt-BR"
    crm_url: str = ""  # e.g. https://crm.example/api/customers?phone={caller_number}
    crm_timeout: float = Field(2.0, gt=0, le=30, allow_inf_nan=False)
    call_info_headers: str = ""  # SIP headers of the caller's INVITE shown on the offer card
    # hot standby (controller.ha; README "High availability"): replicas share a lease in PostgreSQL
    ha: bool = False
    ha_ttl: float = Field(4.0, gt=0, le=300, allow_inf_nan=False)  # s a silent active keeps the lease
    ha_renew: float = Field(0.5, gt=0, le=100, allow_inf_nan=False)  # s between two renewals/attempts
    ha_address: str = ""  # this replica's HTTP API as clients reach it (standbys point to it)

    @field_validator("panel_whatsapp_url")
    @classmethod
    def _panel_whatsapp_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise PydanticCustomError("acd", "an http:// or https:// URL (the sidecar as browsers reach it)")
        return value.rstrip("/")

    @field_validator("panel_language")
    @classmethod
    def _panel_language(cls, value: str) -> str:
        if value not in ("pt-BR", "en"):
            raise PydanticCustomError("acd", '"pt-BR" or "en"')
        return value

    @field_validator("crm_url")
    @classmethod
    def _crm_url(cls, value: str) -> str:
        from controller.panel.crm import check_template

        value = value.strip()
        problem = check_template(value) if value else None
        if problem:
            raise PydanticCustomError("acd", "a URL template ({problem})", {"problem": problem})
        return value

    @field_validator("call_info_headers")
    @classmethod
    def _call_info_headers(cls, value: str) -> str:
        names = [h.strip() for h in value.split(",") if h.strip()]
        for name in names:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-]*", name):
                raise PydanticCustomError(
                    "acd", "comma-separated SIP header names such as X-Ticket,X-Customer-Id"
                )
        if len(names) > 10:
            raise PydanticCustomError("acd", "at most 10 header names")
        return ",".join(names)

    @property
    def info_headers(self) -> list[str]:
        return [h for h in self.call_info_headers.split(",") if h]

    @field_validator("ari_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise PydanticCustomError("acd", "an http:// or https:// URL")
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            # the client authenticates with ACD_ARI_USER/ACD_ARI_PASSWORD; a second set in the URL
            # would be ambiguous (and printed wherever the URL is)
            raise PydanticCustomError("acd", "credentials in the URL")
        return value.rstrip("/")

    @field_validator("wa_graph_url")
    @classmethod
    def _graph_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise PydanticCustomError("acd", "an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("wa_relay_url")
    @classmethod
    def _relay_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise PydanticCustomError("acd", "an http:// or https:// URL")
        return value

    @field_validator("wa_phone_number_id")
    @classmethod
    def _phone_number_id(cls, value: str) -> str:
        if value.strip() and not value.strip().isdigit():
            raise PydanticCustomError("acd", "digits")
        return value.strip()

    @field_validator("sidecar_cors_origins")
    @classmethod
    def _sidecar_cors_origins(cls, value: str) -> str:
        from controller.whatsapp.cors import parse_origins

        try:
            return ",".join(parse_origins(value))
        except ValueError:
            raise PydanticCustomError("acd", "exact origins") from None

    @field_validator("wa_templates_file")
    @classmethod
    def _wa_templates_file(cls, value: str) -> str:
        value = value.strip()
        if value and Path(value).suffix.lower() not in (".json", ".toml"):
            raise PydanticCustomError("acd", "a .json or .toml file")
        return value

    @field_validator("sidecar_host")
    @classmethod
    def _sidecar_host(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("acd", "a non-empty value")
        return value.strip()

    @field_validator("ari_user", "ari_app", "http_host")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("acd", "a non-empty value")
        return value.strip()

    @field_validator("events_url")
    @classmethod
    def _events_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise PydanticCustomError("acd", "an http:// or https:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        scheme, sep, rest = value.strip().partition("://")
        driver = _ASYNC_DRIVERS.get(scheme.lower(), scheme.lower())
        if not sep or driver not in _ASYNC_DRIVERS.values():
            raise PydanticCustomError("acd", "an SQLAlchemy URL with an async driver")
        url = f"{driver}://{rest}"
        from sqlalchemy.engine import make_url  # here: check-config stays light without a URL to read
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url)
        except (ArgumentError, ValueError):
            raise PydanticCustomError("acd", "a well-formed URL") from None
        return url

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().upper() in _LOG_LEVELS:
            return value.strip().upper()
        raise PydanticCustomError("acd", "a log level")

    @field_validator("log_format", mode="before")
    @classmethod
    def _fmt(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def __repr_args__(self):  # noqa: ANN204 - pydantic's signature
        # SecretStr already masks itself; a postgres URL may carry a password too.
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "database_url" else value)

    def secret_values(self) -> list[str]:
        """Plain-text secrets for the log redactor (never print these)."""
        values = [
            self.ari_password.get_secret_value(),
            self.admin_token.get_secret_value(),
            self.events_secret.get_secret_value(),
            self.wa_verify_token.get_secret_value(),
            self.wa_app_secret.get_secret_value(),
            self.wa_access_token.get_secret_value(),
            self.wa_relay_secret.get_secret_value(),
        ]
        match = _URL_CREDENTIALS.search(self.database_url)
        if match and match["pw"]:
            values.append(match["pw"])
        return [v for v in values if v]

    def short_secrets(self) -> list[str]:
        """The secret settings set to fewer than MIN_SECRET characters (guessable; not masked in logs)."""
        names = [
            (ENV_PREFIX + name).upper()
            for name in sorted(_SECRET_SETTINGS)
            if 0 < len(getattr(self, name).get_secret_value()) < MIN_SECRET
        ]
        match = _URL_CREDENTIALS.search(self.database_url)
        if match and 0 < len(match["pw"]) < MIN_SECRET:
            names.append("ACD_DATABASE_URL (its password)")
        return names

    def require_ari_password(self) -> str:
        """The ARI password, or ConfigError: ``run`` can't talk to Asterisk without it."""
        password = self.ari_password.get_secret_value()
        if not password:
            raise ConfigError(
                "settings: ACD_ARI_PASSWORD: must be set to the password of ARI user "
                f"{self.ari_user!r} (from Asterisk's ari.conf); set it in the environment or in .env"
            )
        return password


_SETTING_EXPECT: dict[str, str] = {
    "ari_url": "an http:// or https:// URL such as http://127.0.0.1:8088, without user:password in it"
    " (set ACD_ARI_USER and ACD_ARI_PASSWORD instead)",
    "ari_user": "a non-empty ARI user name (from ari.conf)",
    "ari_password": "a string",
    "ari_app": "a non-empty Stasis application name",
    "config": "a file path",
    "database_url": "sqlite+aiosqlite:///PATH (such as sqlite+aiosqlite:///./data/acd.sqlite3) or"
    " postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB (sqlite:// and postgresql:// are read as these)",
    "http_host": "a non-empty host name or IP address",
    "http_port": "a TCP port number 1-65535",
    "log_level": "one of " + ", ".join(_LOG_LEVELS),
    "log_format": "text or json",
    "admin_token": "a string (the bearer token of the HTTP API's admin)",
    "service_level": "a number of seconds > 0",
    "service_level_target": "a percentage > 0 and <= 100",
    "ha": "true or false (hot standby: several controllers, one active, on PostgreSQL)",
    "ha_ttl": "a number of seconds > 0 and <= 300 (how long a silent active keeps the lease)",
    "ha_renew": "a number of seconds > 0, at most a third of ACD_HA_TTL",
    "ha_address": "an http:// or https:// URL (this replica's HTTP API as clients reach it), or empty",
    "store_buffer": "a whole number >= 1 (history records kept in memory while the database is down)",
    "queue_log": "a file path, or empty for no queue_log",
    "events_url": "an http:// or https:// URL, or empty for no events webhook",
    "events_secret": "a non-empty secret when ACD_EVENTS_URL is set (it signs every event)",
    "sidecar_host": "a non-empty host name or IP address",
    "sidecar_port": "a TCP port number 1-65535",
    "wa_verify_token": "a string",
    "wa_app_secret": "a string",
    "wa_access_token": "a string",
    "wa_phone_number_id": "the WhatsApp phone number id (digits)",
    "wa_graph_url": "an http:// or https:// URL such as https://graph.facebook.com/v24.0",
    "wa_team": "a comma-separated list of agent ids (empty = every agent)",
    "wa_relay_url": "empty or an http:// or https:// URL",
    "wa_relay_secret": "a string",
    "wa_orphan_ttl_hours": "a number of hours > 0",
    "sidecar_cors_origins": "comma-separated exact origins such as http://127.0.0.1:8080 (empty = no CORS)",
    "wa_templates_file": "the path of a .json or .toml file listing approved templates, or empty",
}


_SECRET_SETTINGS = frozenset(
    {
        "ari_password",
        "admin_token",
        "events_secret",
        "wa_verify_token",
        "wa_app_secret",
        "wa_access_token",
        "wa_relay_secret",
    }
)


# Settings that existed in unreleased versions: naming them is an error that says what replaced them.
_REMOVED_SETTINGS: dict[str, str] = {
    "agent_tokens": "removed: give each agent a token_sha256 under [agents.ID] in the queue file "
    "(ACD_CONFIG); the controller and the WhatsApp sidecar both read it",
}


def _removed_settings(env_file: str | Path | None) -> list[str]:
    names = {k.upper() for k in os.environ}
    if env_file is not None and Path(env_file).is_file():
        names |= {k.upper() for k in dotenv_values(env_file)}
    return [
        f"settings: {ENV_PREFIX}{key.upper()}: {why}"
        for key, why in _REMOVED_SETTINGS.items()
        if f"{ENV_PREFIX}{key.upper()}" in names
    ]


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build Settings from the environment (and ``env_file``), ConfigError when invalid.

    ``overrides`` (e.g. ``config=`` from ``--config``) beat the environment.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    problems = _removed_settings(env_file) + _unknown_dotenv_keys(env_file)
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            key = str(err["loc"][0]) if err["loc"] else "?"
            env_name = (ENV_PREFIX + key).upper()
            expect = _SETTING_EXPECT.get(key, err["msg"])
            value = err.get("input")
            if err["type"] == "missing":
                shown = "nothing"
            elif key in _SECRET_SETTINGS:
                shown = "a value that is not shown"
            else:  # a URL's password never reaches the terminal
                shown = repr(redact_url(value) if isinstance(value, str) else value)
            problems.append(f"settings: {env_name}: must be {expect}, got {shown}")
        raise ConfigError(problems) from None
    if settings.events_url and not settings.events_secret.get_secret_value():
        problems.append(
            f"settings: ACD_EVENTS_SECRET: must be {_SETTING_EXPECT['events_secret']}, got nothing"
        )
    problems += _ha_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _ha_problems(settings: Settings) -> list[str]:
    """Hot standby needs a database every replica shares and that judges the lease: PostgreSQL."""
    if not settings.ha:
        return []
    problems = []
    if not settings.database_url.startswith("postgresql"):
        problems.append(
            "settings: ACD_HA: hot standby needs PostgreSQL (every replica must share the lease and "
            "the history); set ACD_DATABASE_URL=postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB, or "
            "ACD_HA=false for one controller on SQLite"
        )
    if settings.ha_renew * 3 > settings.ha_ttl:
        problems.append(
            f"settings: ACD_HA_RENEW: must be {_SETTING_EXPECT['ha_renew']}, got {settings.ha_renew:g} "
            f"with ACD_HA_TTL={settings.ha_ttl:g}"
        )
    address = settings.ha_address.strip()
    if address and not re.match(r"^https?://[^/\s]+", address):
        problems.append(f"settings: ACD_HA_ADDRESS: must be {_SETTING_EXPECT['ha_address']}, got {address!r}")
    return problems


def _unknown_dotenv_keys(env_file: str | Path | None) -> list[str]:
    """A misspelt ACD_ key in .env would silently fall back to a default: report it."""
    if env_file is None or not Path(env_file).is_file():
        return []
    problems = []
    for name in dotenv_values(env_file):
        key = name.upper()
        if key.removeprefix(ENV_PREFIX).lower() in _REMOVED_SETTINGS:
            continue  # reported by _removed_settings
        if key.startswith(ENV_PREFIX) and key.removeprefix(ENV_PREFIX).lower() not in _SETTING_EXPECT:
            close = difflib.get_close_matches(key.removeprefix(ENV_PREFIX).lower(), _SETTING_EXPECT, n=1)
            hint = f" (did you mean {ENV_PREFIX}{close[0].upper()}?)" if close else ""
            problems.append(
                f"{env_file}: {name}: unknown setting{hint}; known settings: "
                + ", ".join(ENV_PREFIX + k.upper() for k in _SETTING_EXPECT)
            )
    return problems


# --------------------------------------------------------------------------- the TOML file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_ENDPOINT = re.compile(r"^(?P<tech>[A-Za-z][A-Za-z0-9_\-]*)/(?P<resource>\S+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class QueueModel(_Strict):
    """One ``[queues.NAME]`` table; defaults match :class:`QueueConfig`."""

    strategy: Strategy = Field(Strategy.LONGEST_IDLE, strict=False)
    ring_timeout: float = Field(15.0, gt=0, allow_inf_nan=False)
    acceptance: Acceptance = Field(Acceptance.ANSWER, strict=False)
    hold: HoldMode = Field(HoldMode.MOH, strict=False)
    wrapup: float = Field(5.0, ge=0, allow_inf_nan=False)
    max_wait: float = Field(0.0, ge=0, allow_inf_nan=False)
    overflow: DialplanTarget | None = None
    reject_delay: float = Field(0.0, ge=0, allow_inf_nan=False)
    busy_delay: float = Field(10.0, ge=0, allow_inf_nan=False)
    no_answer_delay: float = Field(0.0, ge=0, allow_inf_nan=False)
    unreachable_delay: float = Field(5.0, ge=0, allow_inf_nan=False)
    max_no_answer: int = Field(2, ge=0)
    join_empty: bool = True
    leave_when_empty: bool = False
    retry: float = Field(5.0, ge=0, allow_inf_nan=False)
    confirm_timeout: float = Field(10.0, gt=0, allow_inf_nan=False)
    connect_timeout: float = Field(10.0, gt=0, allow_inf_nan=False)
    customer_sees_name: str = Field("", max_length=80)
    customer_sees_number: str = Field("", max_length=40, pattern=r"^[0-9+*#]*$")
    invite_headers: tuple[str, ...] = tuple(INVITE_HEADERS)

    @field_validator("invite_headers", mode="plain")
    @classmethod
    def _invite_headers(cls, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(v in INVITE_HEADERS for v in value):
            raise PydanticCustomError("acd", "")  # the message lists the names (_EXPECT)
        return tuple(dict.fromkeys(value))

    @field_validator("overflow", mode="plain")
    @classmethod
    def _overflow(cls, value: Any) -> DialplanTarget | None:
        if not isinstance(value, str):
            raise PydanticCustomError("acd", "")
        if not value.strip():
            return None
        try:
            return DialplanTarget.parse(value)
        except ValueError as exc:
            raise PydanticCustomError("acd", "{reason}", {"reason": str(exc)}) from None

    def to_engine(self, name: str) -> QueueConfig:
        return QueueConfig(name=name, **dict(self))


class MembershipModel(_Strict):
    """An agent's queue: ``"support"`` or ``{ queue = "support", penalty = 1 }``."""

    queue: str
    penalty: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"queue": value}
        if not isinstance(value, Mapping):
            raise PydanticCustomError("acd_membership", "")
        return value


class AgentModel(_Strict):
    """One ``[agents.ID]`` table."""

    name: str | None = None
    endpoint: str
    queues: list[MembershipModel] = []
    state: AgentStartState = Field(AgentStartState.AVAILABLE, strict=False)
    # hex SHA-256 of the agent's API token: the file never holds the secret itself
    token_sha256: str | None = None

    @field_validator("token_sha256")
    @classmethod
    def _token_hash(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value.strip()):
            raise PydanticCustomError("acd", "")
        return value.strip().lower() if value is not None else None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise PydanticCustomError("acd", "")
        return value.strip() if value is not None else None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not _ENDPOINT.match(value.strip()):
            raise PydanticCustomError("acd", "")
        return value.strip()


_QUEUE_FIELDS = list(QueueModel.model_fields)
_AGENT_FIELDS = list(AgentModel.model_fields)
_MEMBER_FIELDS = list(MembershipModel.model_fields)


def _choices(enum: type) -> str:
    return "one of " + ", ".join(f'"{e.value}"' for e in enum)


_SEC_GE0 = "a number of seconds >= 0"
_EXPECT: dict[str, dict[str, str]] = {
    "queue": {
        "strategy": _choices(Strategy),
        "ring_timeout": "a number of seconds > 0",
        "acceptance": _choices(Acceptance),
        "hold": _choices(HoldMode),
        "wrapup": _SEC_GE0,
        "max_wait": f"{_SEC_GE0} (0 = no limit)",
        "overflow": '"" (hang up) or "context,exten[,priority]" such as "acd-overflow,s,1"',
        "reject_delay": _SEC_GE0,
        "busy_delay": _SEC_GE0,
        "no_answer_delay": _SEC_GE0,
        "unreachable_delay": _SEC_GE0,
        "max_no_answer": "a whole number >= 0 (0 = never)",
        "join_empty": "true or false",
        "leave_when_empty": "true or false",
        "retry": _SEC_GE0,
        "confirm_timeout": "a number of seconds > 0",
        "connect_timeout": "a number of seconds > 0",
        "customer_sees_name": "a name of at most 80 characters shown to the caller once connected,"
        ' e.g. "ACME Support" ("" = show nothing)',
        "customer_sees_number": "a number of at most 40 digits (and + * #) shown to the caller once connected"
        ' ("" = show nothing)',
        "invite_headers": "a list of X-Acd-* headers on the agent's INVITE, from "
        + ", ".join(f'"{k}"' for k in INVITE_HEADERS)
        + " ([] = none)",
    },
    "agent": {
        "name": 'a non-empty string such as "Alice"',
        "endpoint": 'a "TECH/resource" endpoint such as "PJSIP/agent1"',
        "queues": 'a list of queue names or { queue = "...", penalty = N } tables',
        "state": _choices(AgentStartState),
        "token_sha256": "64 hex digits, the SHA-256 of the agent's API token"
        " (e.g. from `printf %s TOKEN | sha256sum`)",
    },
    "membership": {
        "": 'a queue name or a { queue = "...", penalty = N } table',
        "queue": "the name of a queue defined under [queues]",
        "penalty": "a whole number >= 0 (higher = offered later)",
    },
}


def _key(part: str | int) -> str:
    """One segment of a TOML key path, quoted when it isn't a bare key."""
    if isinstance(part, int):
        return f"[{part}]"
    return part if re.fullmatch(r"[A-Za-z0-9_\-]+", part) else f'"{part}"'


def _path(*parts: str | int) -> str:
    out = ""
    for part in parts:
        seg = _key(part)
        out += seg if seg.startswith("[") or not out else "." + seg
    return out


def _toml_value(value: Any) -> str:
    """Show a value the way the admin typed it in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    return f"unknown key ({hint}expected one of: {', '.join(known)})"


def _problems(prefix: tuple[str | int, ...], kind: str, exc: ValidationError) -> list[str]:
    """Turn pydantic errors into our one-line messages (without the file name)."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        where = _path(*prefix, *loc)
        if kind == "agent" and loc and loc[0] == "queues" and len(loc) >= 2:
            field = str(loc[2]) if len(loc) >= 3 else ""
            table, known = _EXPECT["membership"], _MEMBER_FIELDS
        else:
            field = str(loc[0]) if loc else ""
            table, known = _EXPECT[kind], (_QUEUE_FIELDS if kind == "queue" else _AGENT_FIELDS)
        if err["type"] == "extra_forbidden":
            out.append(f"{where}: {_unknown_key(field, known)}")
        elif err["type"] == "missing":
            out.append(f"{where}: missing, must be {table.get(field, 'set')}")
        else:
            expect = table.get(field, err["msg"])
            reason = (err.get("ctx") or {}).get("reason") if err["type"] == "acd" else None
            if reason and reason.startswith("expected"):
                reason = None  # says nothing beyond `expect`
            line = f"{where}: must be {expect}, got {_toml_value(err['input'])}"
            out.append(f"{line} ({reason})" if reason else line)
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (looked in {path.resolve()}); {HOW_TO_SET_CONFIG}"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file; {HOW_TO_SET_CONFIG}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            detail = msg[: m.start()].strip()
            raise ConfigError(f"{path}: line {m[1]}, column {m[2]}: TOML syntax error: {detail}") from None
        raise ConfigError(f"{path}: TOML syntax error: {msg}") from None


def load_setup(path: str | Path) -> AcdSetup:
    """Read and validate the queue/agent TOML file into the engine's :class:`AcdSetup`.

    Raises ConfigError listing every problem found, each prefixed with the file name.
    """
    path = Path(path)
    doc = _read_toml(path)
    problems: list[str] = []

    for key in doc:
        if key not in ("queues", "agents", "supervisors"):
            problems.append(f"{_path(key)}: {_unknown_key(key, ['queues', 'agents', 'supervisors'])}")

    raw_queues = doc.get("queues", {})
    raw_agents = doc.get("agents", {})
    if not isinstance(raw_queues, dict):
        problems.append(f"queues: must be tables like [queues.support], got {_toml_value(raw_queues)}")
        raw_queues = {}
    elif not raw_queues:
        problems.append("queues: at least one queue is required, e.g. a [queues.support] table")
    if not isinstance(raw_agents, dict):
        problems.append(f"agents: must be tables like [agents.alice], got {_toml_value(raw_agents)}")
        raw_agents = {}

    queues: dict[str, QueueConfig] = {}
    for name, raw in raw_queues.items():
        where = _path("queues", name)
        if not _NAME.match(name):
            problems.append(f"{where}: queue name must be letters, digits, '_', '-' or '.'")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table of queue settings, got {_toml_value(raw)}")
            continue
        try:
            queues[name] = QueueModel.model_validate(raw).to_engine(name)
        except ValidationError as exc:
            problems.extend(_problems(("queues", name), "queue", exc))

    agents: dict[str, AgentConfig] = {}
    endpoint_owner: dict[str, str] = {}
    token_owner: dict[str, str] = {}
    for agent_id, raw in raw_agents.items():
        where = _path("agents", agent_id)
        if not _NAME.match(agent_id):
            problems.append(f"{where}: agent id must be letters, digits, '_', '-' or '.'")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table of agent settings, got {_toml_value(raw)}")
            continue
        try:
            model = AgentModel.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_problems(("agents", agent_id), "agent", exc))
            continue
        ok = True
        seen: set[str] = set()
        for i, member in enumerate(model.queues):
            mwhere = _path("agents", agent_id, "queues", i)
            if member.queue not in raw_queues:
                known = ", ".join(raw_queues) or "none"
                close = difflib.get_close_matches(member.queue, list(raw_queues), n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                problems.append(
                    f"{mwhere}: unknown queue {_toml_value(member.queue)} ({hint}defined queues: {known})"
                )
                ok = False
            elif member.queue in seen:
                problems.append(f"{mwhere}: queue {_toml_value(member.queue)} is listed twice for this agent")
                ok = False
            seen.add(member.queue)
        m = _ENDPOINT.match(model.endpoint)
        assert m is not None  # checked by AgentModel
        endpoint_key = f"{m['tech'].lower()}/{m['resource']}"
        if endpoint_key in endpoint_owner:
            problems.append(
                f"{_path('agents', agent_id, 'endpoint')}: {_toml_value(model.endpoint)} is already used by "
                f"agent {endpoint_owner[endpoint_key]}; each agent needs its own endpoint"
            )
            ok = False
        else:
            endpoint_owner[endpoint_key] = agent_id
        if model.token_sha256 is not None:
            if model.token_sha256 in token_owner:
                # one token for two agents would act as whichever the API happened to match
                problems.append(
                    f"{_path('agents', agent_id, 'token_sha256')}: the same token as agent "
                    f"{token_owner[model.token_sha256]}; give each agent its own token"
                )
                ok = False
            else:
                token_owner[model.token_sha256] = agent_id
        if ok:
            agents[agent_id] = AgentConfig(
                id=agent_id,
                name=model.name or agent_id,
                endpoint=model.endpoint,
                queues=tuple(Membership(mm.queue, mm.penalty) for mm in model.queues),
                state=model.state,
            )

    _check_supervisors(doc.get("supervisors", {}), raw_queues, token_owner, problems)
    if problems:
        raise ConfigError(f"{path}: {p}" for p in problems)
    return AcdSetup(queues=queues, agents=agents)


_SUPERVISOR_FIELDS = ["name", "token_sha256", "queues"]


def _check_supervisors(
    raw: Any, raw_queues: Mapping[str, Any], token_owner: dict[str, str], problems: list[str]
) -> None:
    """``[supervisors.ID]``: name, token_sha256 (required) and the queues the wallboard shows.

    A token shared with an agent or another supervisor is refused: the API would act as
    whichever it happened to match."""
    if not isinstance(raw, dict):
        problems.append(f"supervisors: must be tables like [supervisors.maria], got {_toml_value(raw)}")
        return
    for sup_id, table in raw.items():
        where = _path("supervisors", sup_id)
        if not _NAME.match(sup_id):
            problems.append(f"{where}: supervisor id must be letters, digits, '_', '-' or '.'")
            continue
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table of supervisor settings, got {_toml_value(table)}")
            continue
        for key in table:
            if key not in _SUPERVISOR_FIELDS:
                unknown = _unknown_key(key, _SUPERVISOR_FIELDS)
                problems.append(f"{_path('supervisors', sup_id, key)}: {unknown}")
        name = table.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            problems.append(f"{where}.name: must be a non-empty string, got {_toml_value(name)}")
        digest = table.get("token_sha256")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest.strip()):
            got = "missing" if digest is None else f"got {_toml_value(digest)}"
            problems.append(
                f"{where}.token_sha256: must be 64 hex digits, the SHA-256 of the supervisor's token ({got})"
            )
        else:
            digest = digest.strip().lower()
            if digest in token_owner:
                owner = token_owner[digest]
                owner = owner if owner.startswith("supervisor ") else f"agent {owner}"
                problem = f"the same token as {owner}; give each person their own"
                problems.append(f"{where}.token_sha256: {problem}")
            else:
                token_owner[digest] = f"supervisor {sup_id}"
        queues = table.get("queues", [])
        if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues) or not queues:
            got = _toml_value(queues)
            problems.append(f"{where}.queues: must be a non-empty list of queue names, got {got}")
            continue
        for i, queue in enumerate(queues):
            if queue not in raw_queues:
                known = ", ".join(raw_queues) or "none"
                problems.append(
                    f"{_path('supervisors', sup_id, 'queues', i)}: unknown queue {_toml_value(queue)}"
                    f" (defined queues: {known})"
                )


def load_supervisors(path: str | Path) -> dict[str, tuple[str, str, frozenset[str]]]:
    """Supervisor id -> (name, hex SHA-256 of its token, queues it may watch and act on).

    Like :func:`load_agent_tokens`: credentials stay out of the engine; call after
    :func:`load_setup` validated the file (invalid entries are skipped here)."""
    doc = _read_toml(Path(path))
    raw = doc.get("supervisors")
    out: dict[str, tuple[str, str, frozenset[str]]] = {}
    if isinstance(raw, dict):
        for sup_id, table in raw.items():
            if not isinstance(table, dict):
                continue
            digest, queues = table.get("token_sha256"), table.get("queues")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest.strip()):
                continue
            if not isinstance(queues, list):
                continue
            name = table.get("name") if isinstance(table.get("name"), str) else sup_id
            queue_set = frozenset(q for q in queues if isinstance(q, str))
            out[sup_id] = (name.strip() or sup_id, digest.strip().lower(), queue_set)
    return out


def load_agent_tokens(path: str | Path) -> dict[str, str]:
    """Agent id -> hex SHA-256 of its API token, from ``token_sha256`` in the queue file.

    Kept out of :class:`AcdSetup` on purpose: the engine has no business with credentials.
    Call after :func:`load_setup` (which validates the file); invalid entries are skipped here.
    """
    doc = _read_toml(Path(path))
    agents = doc.get("agents")
    tokens: dict[str, str] = {}
    if isinstance(agents, dict):
        for agent_id, raw in agents.items():
            digest = raw.get("token_sha256") if isinstance(raw, dict) else None
            if isinstance(digest, str) and re.fullmatch(r"[0-9a-fA-F]{64}", digest.strip()):
                tokens[agent_id] = digest.strip().lower()
    return tokens


def setup_warnings(setup: AcdSetup) -> list[str]:
    """Legal but probably unintended combinations, for ``check-config`` and the startup log."""
    warnings: list[str] = []
    staffed = {m.queue for agent in setup.agents.values() for m in agent.queues}
    for name, queue in setup.queues.items():
        if name not in staffed:
            warnings.append(f"queues.{name}: no agent is a member; callers will wait or overflow")
        if queue.overflow is not None and queue.max_wait == 0:
            warnings.append(f"queues.{name}.overflow: never used because max_wait = 0 (no limit)")
    for agent_id, agent in setup.agents.items():
        if not agent.queues:
            warnings.append(f"agents.{agent_id}.queues: empty; this agent never gets a call")
    return warnings
