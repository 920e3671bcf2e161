"""Approved message templates, listed for the agents' composer (``GET /api/templates``).

Meta keeps the approved templates; the sidecar only needs to show agents which ones exist, with
their text, so that outside the 24-hour window they can pick one and fill in its parameters.
The admin lists them in ``ACD_WA_TEMPLATES_FILE``, JSON or TOML::

    # templates.toml
    [[templates]]
    name = "atualizacao_pedido"      # as approved in WhatsApp Manager
    language = "pt_BR"
    category = "UTILITY"             # MARKETING, UTILITY or AUTHENTICATION
    body = "Olá! Seu pedido {{1}} foi atualizado."

(JSON: ``{"templates": [{...}, ...]}`` or a bare list.) ``params`` is the number of ``{{N}}``
placeholders, counted from ``body``; it may be given, and must then agree. The file is checked
at start; each mistake is one line naming the file and the entry.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from controller.config import ConfigError

__all__ = ["CATEGORIES", "check_templates", "load_templates"]

CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
FIELDS = ("name", "language", "category", "body", "params")
MAX_BODY = 1024  # Meta's limit for a template's body text
_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2,3})?$")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def _count_params(body: str) -> int:
    """Distinct ``{{N}}`` placeholders; ValueError unless they are 1..n."""
    found = _PLACEHOLDER.findall(body)
    numbers: set[int] = set()
    for token in found:
        if not token.isdigit() or int(token) < 1:
            raise ValueError(f"placeholder {{{{{token}}}}} must be a number: {{{{1}}}}, {{{{2}}}}, ...")
        numbers.add(int(token))
    expected = set(range(1, len(numbers) + 1))
    if numbers != expected:
        missing = min(expected - numbers)
        raise ValueError(
            f"placeholders must be numbered from {{{{1}}}} without gaps; {{{{{missing}}}}} is missing"
        )
    return len(numbers)


def _check_one(entry: Any) -> tuple[dict | None, list[str]]:
    if not isinstance(entry, dict):
        return None, ["must be a table/object with name, language, category, body"]
    problems: list[str] = []
    for key in entry:
        if key not in FIELDS:
            problems.append(f"{key}: unknown key (expected one of: {', '.join(FIELDS)})")
    name, language, category, body = (entry.get(k) for k in ("name", "language", "category", "body"))
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"name: must be the template's name as approved (a-z, 0-9, _), got {name!r}")
    if not isinstance(language, str) or not _LANGUAGE.match(language):
        problems.append(f'language: must be a language code such as "pt_BR" or "en_US", got {language!r}')
    if not isinstance(category, str) or category.strip().upper() not in CATEGORIES:
        problems.append(f"category: must be one of {', '.join(CATEGORIES)}, got {category!r}")
    params = None
    if not isinstance(body, str) or not body.strip():
        problems.append("body: must be the template's body text, with {{1}}, {{2}} ... for its parameters")
    elif len(body) > MAX_BODY:
        problems.append(f"body: longer than {MAX_BODY} characters")
    else:
        try:
            params = _count_params(body)
        except ValueError as exc:
            problems.append(f"body: {exc}")
    given = entry.get("params")
    if (
        given is not None
        and params is not None
        and (not isinstance(given, int) or isinstance(given, bool) or given != params)
    ):
        problems.append(f"params: the body has {params} placeholder(s), got params = {given!r}")
    if problems:
        return None, problems
    assert isinstance(category, str) and isinstance(body, str) and params is not None
    return {
        "name": name,
        "language": language,
        "category": category.strip().upper(),
        "body": body,
        "params": params,
    }, []


def _label(i: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"templates[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")


def check_templates(entries: Iterable[Any], where: str = "templates") -> list[dict]:
    """Validated, normalised templates; ConfigError listing every problem (``where: entry: ...``)."""
    out: list[dict] = []
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(entries):
        template, found = _check_one(entry)
        problems += [f"{where}: {_label(i, entry)}: {p}" for p in found]
        if template is None:
            continue
        key = (template["name"], template["language"])
        if key in seen:
            first = f"templates[{seen[key]}]"
            problems.append(f"{where}: {_label(i, entry)}: {key[0]} ({key[1]}) is already listed as {first}")
            continue
        seen[key] = i
        out.append(template)
    if problems:
        raise ConfigError(problems)
    return out


def load_templates(path: str | Path) -> list[dict]:
    """Read ``ACD_WA_TEMPLATES_FILE`` (``.json`` or ``.toml``); ConfigError naming the file and entry."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: templates file not found (ACD_WA_TEMPLATES_FILE)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read templates file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    if path.suffix.lower() == ".toml":
        try:
            doc: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    elif path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: JSON syntax error: {exc}") from None
    else:
        raise ConfigError(f"{path}: templates file must end in .json or .toml")
    if isinstance(doc, dict):
        unknown = [k for k in doc if k != "templates"]
        if unknown:
            raise ConfigError(f"{path}: {unknown[0]}: unknown key (expected a templates list)")
        doc = doc.get("templates", [])
    if not isinstance(doc, list):
        raise ConfigError(f"{path}: templates: must be a list of templates, got {type(doc).__name__}")
    return check_templates(doc, str(path))
