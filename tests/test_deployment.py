"""The deployment files agree with the controller as shipped.

``asterisk-config/`` is parsed with a small parser for Asterisk's ``.conf`` format and checked
against the controller's default settings and ``examples/acd.toml``: the Stasis app and ARI
user, the agents' endpoints, the queues the dialplan uses, a fallback after every Stasis(), the
modules those need, and no auto-answer anywhere. ``docker-compose.yml``, the ``Dockerfile`` and
``.env.example`` are checked for the files and names they refer to. No Asterisk or Docker is
needed: these are the mistakes an admin would otherwise find with a phone in their hand.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from controller.acd.setup import AcdSetup
from controller.config import ConfigError, Settings, load_settings, load_setup

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "asterisk-config"
EXAMPLE = ROOT / "examples" / "acd.toml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

EXPECTED_FILES = {
    "asterisk.conf",
    "modules.conf",
    "http.conf",
    "ari.conf",
    "pjsip.conf",
    "extensions.conf",
    "musiconhold.conf",
    "queues.conf",
}


def default(name: str) -> Any:
    """A setting's default as shipped (not whatever this machine's environment says)."""
    return Settings.model_fields[name].default


# --------------------------------------------------------------------------- .conf parser


class ConfSyntaxError(ValueError):
    pass


@dataclass
class Section:
    """One ``[name]`` / ``[name](!)`` / ``[name](tmpl,...)`` category of a .conf file."""

    name: str
    line: int
    is_template: bool = False
    templates: tuple[str, ...] = ()
    options: list[tuple[str, str, str]] = field(default_factory=list)  # (key, "=" | "=>", value)

    def get(self, key: str, fallback: str | None = None) -> str | None:
        values = [v for k, _, v in self.options if k == key]
        return values[-1] if values else fallback


@dataclass
class ConfFile:
    path: Path
    sections: list[Section]
    comment_lines: int
    option_lines: int
    first_line: str

    def named(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name == name]

    def one(self, name: str) -> Section:
        found = [s for s in self.sections if s.name == name and not s.is_template]
        assert len(found) == 1, f"{self.path.name}: expected one [{name}], found {len(found)}"
        return found[0]

    def resolved(self, section: Section) -> dict[str, list[str]]:
        """Options with templates applied (template values first, the section's own last)."""
        out: dict[str, list[str]] = defaultdict(list)
        for tmpl_name in section.templates:
            earlier = [s for s in self.sections if s.name == tmpl_name and s.line < section.line]
            assert earlier, (
                f"{self.path.name}:{section.line}: template {tmpl_name!r} is not defined before use"
            )
            for key, values in self.resolved(earlier[-1]).items():
                out[key].extend(values)
        for key, _, value in section.options:
            out[key].append(value)
        return dict(out)

    def objects(self, kind: str) -> dict[str, dict[str, list[str]]]:
        """PJSIP-style objects of one ``type`` (endpoint, aor, auth, ...), by name."""
        found: dict[str, dict[str, list[str]]] = {}
        for section in self.sections:
            if section.is_template:
                continue
            opts = self.resolved(section)
            if opts.get("type", [""])[-1] == kind:
                assert section.name not in found, f"{self.path.name}: two {kind} objects named {section.name}"
                found[section.name] = opts
        return found


def _strip_comment(line: str) -> str:
    """Drop a ``;`` comment; ``\\;`` is a literal semicolon."""
    out = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if ch == ";":
            break
        out.append(ch)
        i += 1
    return "".join(out).rstrip()


_HEADER = re.compile(r"\[(?P<name>[^\]\s]+)\](?:\((?P<extra>[^)]*)\))?")
_OPTION = re.compile(r"(?P<key>[^=\s][^=]*?)\s*(?P<op>=>|=)\s*(?P<value>.*)")


def parse_conf(path: Path) -> ConfFile:
    """Parse an Asterisk .conf file; every line must be a comment, a header or key = value."""
    text = path.read_text(encoding="utf-8")
    sections: list[Section] = []
    comments = options = 0
    in_block = False
    first = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not first and raw.strip():
            first = raw.strip()
        if in_block:  # ;-- block comment --;
            comments += 1
            if "--;" in raw:
                in_block = False
            continue
        if raw.lstrip().startswith(";--"):
            comments += 1
            in_block = "--;" not in raw.lstrip()[3:]
            continue
        if raw.lstrip().startswith(";"):
            comments += 1
            continue
        line = _strip_comment(raw).strip()
        if not line:
            continue
        if line.startswith("#"):
            raise ConfSyntaxError(
                f"{path.name}:{lineno}: {line.split()[0]} is not allowed (the checks can't follow it)"
            )
        header = _HEADER.fullmatch(line)
        if header:
            extra = [x.strip() for x in (header["extra"] or "").split(",") if x.strip()]
            sections.append(
                Section(
                    header["name"],
                    lineno,
                    is_template="!" in extra,
                    templates=tuple(x for x in extra if x not in ("!", "+")),
                )
            )
            continue
        option = _OPTION.fullmatch(line)
        if option is None:
            raise ConfSyntaxError(f"{path.name}:{lineno}: not a [section] or key = value line: {raw!r}")
        if not sections:
            raise ConfSyntaxError(f"{path.name}:{lineno}: option before the first [section]")
        options += 1
        sections[-1].options.append((option["key"].strip(), option["op"], option["value"].strip()))
    if in_block:
        raise ConfSyntaxError(f"{path.name}: unterminated ;-- block comment")
    return ConfFile(path, sections, comments, options, first)


# --------------------------------------------------------------------------- dialplan


@dataclass(frozen=True)
class Step:
    context: str
    exten: str
    priority: int
    label: str | None
    app: str
    args: tuple[str, ...]
    line: str


def split_args(data: str) -> tuple[str, ...]:
    """Split application arguments on top-level commas (not inside ``(...)``, ``${...}``, ``$[...]``)."""
    args, depth, cur = [], 0, []
    for ch in data:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    args.append("".join(cur).strip())
    return tuple(args)


def parse_dialplan(conf: ConfFile) -> dict[str, dict[str, list[Step]]]:
    """``{context: {exten: [Step, ...]}}`` from ``exten =>`` / ``same =>`` lines."""
    plan: dict[str, dict[str, list[Step]]] = {}
    for section in conf.sections:
        if section.name in ("general", "globals"):
            continue
        context = plan.setdefault(section.name, {})
        last_exten: str | None = None
        for key, _, value in section.options:
            if key == "include":
                continue
            if key == "exten":
                exten, prio, rest = (value.split(",", 2) + ["", ""])[:3]
                exten = exten.strip()
                last_exten = exten
            elif key == "same":
                assert last_exten is not None, f"[{section.name}]: 'same =>' before any 'exten =>'"
                exten = last_exten
                prio, rest = (value.split(",", 1) + [""])[:2]
            else:
                raise AssertionError(f"extensions.conf [{section.name}]: unexpected {key} => {value}")
            steps = context.setdefault(exten, [])
            prio = prio.strip()
            label = None
            named = re.fullmatch(r"(\w+)\((\w+)\)", prio)
            if named:
                prio, label = named[1], named[2]
            if prio == "n":
                number = steps[-1].priority + 1 if steps else 1
            elif prio.isdigit():
                number = int(prio)
            else:
                raise AssertionError(f"[{section.name}] {exten}: unsupported priority {prio!r}")
            app = re.fullmatch(r"\s*(?P<app>\w+)(?:\((?P<data>.*)\))?\s*", rest)
            assert app is not None, (
                f"[{section.name}] {exten},{prio}: cannot read the application in {rest!r}"
            )
            steps.append(
                Step(
                    section.name,
                    exten,
                    number,
                    label,
                    app["app"],
                    split_args(app["data"]) if app["data"] else (),
                    value,
                )
            )
    return plan


def all_steps(plan: dict[str, dict[str, list[Step]]]) -> list[Step]:
    return [step for context in plan.values() for steps in context.values() for step in steps]


def find_step(plan: dict[str, dict[str, list[Step]]], context: str, exten: str, priority: str) -> Step | None:
    for step in plan.get(context, {}).get(exten, []):
        if str(step.priority) == priority or step.label == priority:
            return step
    return None


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def confs() -> dict[str, ConfFile]:
    return {path.name: parse_conf(path) for path in sorted(CONF_DIR.glob("*.conf"))}


@pytest.fixture(scope="module")
def setup() -> AcdSetup:
    return load_setup(EXAMPLE)


@pytest.fixture(scope="module")
def plan(confs: dict[str, ConfFile]) -> dict[str, dict[str, list[Step]]]:
    return parse_dialplan(confs["extensions.conf"])


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def read_env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for lineno, raw in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        assert m, f".env.example:{lineno}: not NAME=value: {raw!r}"
        assert " #" not in m[2], f".env.example:{lineno}: keep comments on their own line"
        values[m[1]] = m[2]
    return values


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``, from .env.example."""

    def sub(m: re.Match[str]) -> str:
        value = env.get(m["name"])
        if m["op"] in (":-", "-"):
            return value if value else m["arg"]
        assert value is not None, f"docker-compose.yml uses ${{{m['name']}}}, which .env.example doesn't set"
        return value

    return _VAR.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


# --------------------------------------------------------------------------- the files themselves


def test_asterisk_config_has_every_file() -> None:
    present = {p.name for p in CONF_DIR.glob("*.conf")}
    assert present >= EXPECTED_FILES, f"missing: {sorted(EXPECTED_FILES - present)}"


def test_every_conf_file_parses_and_explains_itself(confs: dict[str, ConfFile]) -> None:
    assert confs
    for name, conf in confs.items():
        assert conf.sections, f"{name}: no [section]"
        assert conf.first_line.startswith(";"), f"{name}: should open with a comment saying what it is for"
        # "Every file commented: why each setting is there" - not a bare list of settings.
        assert conf.comment_lines * 3 >= conf.option_lines, (
            f"{name}: {conf.comment_lines} comment lines for {conf.option_lines} settings"
        )


def test_parser_reads_templates_and_objects(tmp_path: Path) -> None:
    """The parser itself, on the shapes Asterisk accepts."""
    path = tmp_path / "sample.conf"
    text = (
        "; header\n[t](!)\ntype = endpoint\nallow = ulaw\n[a](t)\nallow = alaw ; comment\n"
        "[a]\ntype=aor\nmax_contacts=1\n[x]\nexten => 1,1,Set(A=b\\;c)\n same => n(l),Hangup\n"
    )
    conf = _parse_text(path, text)
    assert [(s.name, s.is_template, s.templates) for s in conf.sections] == [
        ("t", True, ()),
        ("a", False, ("t",)),
        ("a", False, ()),
        ("x", False, ()),
    ]
    assert conf.objects("endpoint") == {"a": {"type": ["endpoint"], "allow": ["ulaw", "alaw"]}}
    assert conf.objects("aor") == {"a": {"type": ["aor"], "max_contacts": ["1"]}}
    steps = parse_dialplan(ConfFile(path, [conf.sections[3]], 0, 0, ""))["x"]["1"]
    assert [(s.priority, s.label, s.app, s.args) for s in steps] == [
        (1, None, "Set", ("A=b;c",)),
        (2, "l", "Hangup", ()),
    ]
    with pytest.raises(ConfSyntaxError):
        _parse_text(path, "[a]\nthis is not an option\n")
    with pytest.raises(ConfSyntaxError):
        _parse_text(path, "#include other.conf\n")


def _parse_text(path: Path, text: str) -> ConfFile:
    path.write_text(text, encoding="utf-8")
    return parse_conf(path)


# --------------------------------------------------------------------------- ARI: app, user, address


def test_ari_user_is_the_controllers(confs: dict[str, ConfFile]) -> None:
    ari = confs["ari.conf"]
    assert ari.one("general").get("enabled") == "yes"
    users = ari.objects("user")
    user = default("ari_user")
    assert user in users, f"ari.conf has no [{user}] user (ACD_ARI_USER default)"
    assert users[user].get("read_only", ["no"])[-1] == "no", "the controller must be able to act on calls"
    assert users[user].get("password", [""])[-1], "ari.conf: the user needs a password"


def test_http_serves_ari_where_the_controller_looks(confs: dict[str, ConfFile]) -> None:
    http = confs["http.conf"].one("general")
    url = urlsplit(default("ari_url"))
    assert http.get("enabled") == "yes"
    assert http.get("bindport", "8088") == str(url.port or 80)
    assert http.get("bindaddr") == url.hostname, "ARI should listen where ACD_ARI_URL points (loopback)"
    assert http.get("prefix", "") == "", "a prefix would move ARI away from /ari"


def test_every_stasis_call_uses_the_app_and_a_known_queue(
    plan: dict[str, dict[str, list[Step]]], setup: AcdSetup
) -> None:
    stasis = [s for s in all_steps(plan) if s.app.lower() == "stasis"]
    assert stasis, "extensions.conf never sends a caller to the controller"
    for step in stasis:
        where = f"[{step.context}] {step.exten},{step.priority}"
        assert step.args and step.args[0] == default("ari_app"), f"{where}: Stasis app must be ACD_ARI_APP"
        assert len(step.args) in (2, 3), f"{where}: Stasis(app,queue[,priority])"
        assert step.args[1] in setup.queues, f"{where}: queue {step.args[1]!r} is not in examples/acd.toml"
        if len(step.args) == 3:
            assert re.fullmatch(r"-?\d+", step.args[2]), f"{where}: priority must be a whole number"
    used = {s.args[1] for s in stasis}
    assert used == set(setup.queues), f"queues nobody can call: {sorted(set(setup.queues) - used)}"


def test_every_stasis_is_followed_by_a_fallback(plan: dict[str, dict[str, list[Step]]]) -> None:
    """Stasis() returns when no controller is connected: callers must never hit silence."""
    for step in all_steps(plan):
        if step.app.lower() != "stasis":
            continue
        steps = plan[step.context][step.exten]
        after = [s for s in steps if s.priority == step.priority + 1]
        where = f"[{step.context}] {step.exten},{step.priority}"
        assert after, f"{where}: nothing after Stasis(); the caller would get 603 Decline"
        assert after[0].app.lower() not in ("hangup", "wait", "noop"), f"{where}: needs a real fallback"


def test_every_stasis_retries_failed_then_falls_back(
    confs: dict[str, ConfFile], plan: dict[str, dict[str, list[Step]]]
) -> None:
    """A caller refused by Stasis() (no controller holds the websocket: takeover, restart) tries
    again every second for longer than ACD_HA_TTL + resync, then reaches the fallback; a caller
    the controller sent on (STASISSTATUS=SUCCESS) goes straight to the fallback."""
    retries = confs["extensions.conf"].one("globals").get("ACD_STASIS_RETRIES")
    assert retries is not None and retries.isdigit(), "[globals] ACD_STASIS_RETRIES = seconds"
    assert int(retries) >= default("ha_ttl") + 2, "the retries must outlast ACD_HA_TTL + resync"
    for stasis in [s for s in all_steps(plan) if s.app.lower() == "stasis"]:
        steps = plan[stasis.context][stasis.exten]
        where = f"[{stasis.context}] {stasis.exten},{stasis.priority}"
        by_label = {s.label: s for s in steps if s.label}
        first = steps[0] if steps[0].app.lower() == "set" else steps[1]
        assert first.args == ("ACD_TRIES=0",) and first.priority < stasis.priority, f"{where}: reset"
        loop = [s for s in steps if s.priority > stasis.priority]
        apps = [s.app.lower() for s in loop]
        assert apps[:7] == ["gotoif", "gotoif", "set", "ringing", "wait", "goto", "goto"], f"{where}: {apps}"
        status, bound, count, _ring, wait, back, fallback = loop[:7]
        assert status.args == ('$["${STASISSTATUS}" != "FAILED"]?fallback',), f"{where}: only FAILED retries"
        assert bound.args == ("$[${ACD_TRIES} >= ${ACD_STASIS_RETRIES}]?fallback",), f"{where}: bounded"
        assert count.args == ("ACD_TRIES=$[${ACD_TRIES} + 1]",), where
        assert wait.args == ("1",), where
        assert back.args == (stasis.label,) and by_label.get(stasis.label) is stasis, f"{where}: loops back"
        assert fallback.label == "fallback" and fallback.args[0] == "acd-fallback", (
            f"{where}: ends in the fallback"
        )


def test_dialplan_gotos_lead_somewhere(plan: dict[str, dict[str, list[Step]]]) -> None:
    for step in all_steps(plan):
        if step.app.lower() != "goto" or any("$" in a for a in step.args):
            continue
        if len(step.args) == 3:
            target = step.args
        elif len(step.args) == 2:
            target = (step.context, *step.args)
        else:
            target = (step.context, step.exten, *step.args)
        assert find_step(plan, *target), (
            f"[{step.context}] {step.exten}: Goto({','.join(step.args)}) goes nowhere"
        )


def test_overflow_targets_exist(plan: dict[str, dict[str, list[Step]]], setup: AcdSetup) -> None:
    targets = [q.overflow for q in setup.queues.values() if q.overflow is not None]
    assert targets, "examples/acd.toml should show an overflow target"
    for target in targets:
        step = find_step(plan, target.context, target.exten, str(target.priority))
        assert step is not None, f"overflow {target} is not in extensions.conf"


def test_fallback_queues_ring_the_same_agents(
    confs: dict[str, ConfFile], plan: dict[str, dict[str, list[Step]]], setup: AcdSetup
) -> None:
    queues = confs["queues.conf"]
    defined = {s.name: s for s in queues.sections if not s.is_template and s.name != "general"}
    used = {s.args[0] for s in all_steps(plan) if s.app.lower() == "queue"}
    assert used, "no app_queue fallback in the dialplan"
    for name in used:
        assert name in defined, f"Queue({name}) is not defined in queues.conf"
        assert name.endswith("-fallback") and name.removesuffix("-fallback") in setup.queues
        acd_queue = name.removesuffix("-fallback")
        expected = {
            (agent.endpoint, m.penalty)
            for agent in setup.agents.values()
            for m in agent.queues
            if m.queue == acd_queue
        }
        members = {
            (parts[0], int(parts[1]) if len(parts) > 1 and parts[1] else 0)
            for v in queues.resolved(defined[name]).get("member", [])
            for parts in [[p.strip() for p in v.split(",")]]
        }
        assert members == expected, f"queues.conf [{name}] members differ from acd.toml [queues.{acd_queue}]"
        opts = queues.resolved(defined[name])
        assert opts.get("ringinuse", ["yes"])[-1] == "no", f"[{name}]: never ring an agent who is on a call"


# --------------------------------------------------------------------------- PJSIP


def test_every_agent_endpoint_exists_and_rings_properly(
    confs: dict[str, ConfFile], plan: dict[str, dict[str, list[Step]]], setup: AcdSetup
) -> None:
    pjsip = confs["pjsip.conf"]
    endpoints, aors, auths = pjsip.objects("endpoint"), pjsip.objects("aor"), pjsip.objects("auth")
    for agent in setup.agents.values():
        tech, _, resource = agent.endpoint.partition("/")
        assert tech.upper() == "PJSIP", f"{agent.id}: {agent.endpoint} is not a PJSIP endpoint"
        assert resource in endpoints, f"{agent.id}: pjsip.conf has no endpoint [{resource}]"
        ep = {k: v[-1] for k, v in endpoints[resource].items()}
        assert ep.get("context") in plan, (
            f"[{resource}]: context {ep.get('context')!r} not in extensions.conf"
        )
        # media through Asterisk (bridges, MOH, DTMF) and the offer's display reaching the phone
        assert ep.get("direct_media") == "no", resource
        for option in ("send_pai", "send_rpid", "trust_id_outbound"):
            assert ep.get(option) == "yes", f"[{resource}]: {option} = yes shows the offer on the phone"
        assert ep.get("send_connected_line", "yes") == "yes", resource
        assert ep.get("dtmf_mode", "rfc4733") in ("rfc4733", "info", "auto", "auto_info"), resource
        for aor_name in ep["aors"].split(","):
            aor = {k: v[-1] for k, v in aors[aor_name.strip()].items()}
            assert float(aor.get("qualify_frequency", "0")) > 0, (
                f"[{aor_name}]: dead phones must turn unreachable"
            )
            assert aor.get("max_contacts") == "1" and aor.get("remove_existing") == "yes", aor_name
        assert ep.get("auth") in auths, f"[{resource}]: agents' phones must authenticate"


def test_every_endpoint_lands_in_an_existing_context(
    confs: dict[str, ConfFile], plan: dict[str, dict[str, list[Step]]]
) -> None:
    pjsip = confs["pjsip.conf"]
    for name, opts in pjsip.objects("endpoint").items():
        assert opts.get("context", ["default"])[-1] in plan, f"endpoint [{name}]: context missing"
        assert opts.get("direct_media", ["yes"])[-1] == "no", (
            f"endpoint [{name}]: media must stay in Asterisk"
        )
    for name, opts in pjsip.objects("identify").items():
        assert opts["endpoint"][-1] in pjsip.objects("endpoint"), f"identify [{name}]"
    customers = [
        o for o in pjsip.objects("endpoint").values() if o.get("context", [""])[-1] == "from-customers"
    ]
    assert customers, "an inbound trunk/customer example is expected"


def test_transports_udp_and_tcp(confs: dict[str, ConfFile]) -> None:
    protocols = {opts["protocol"][-1] for opts in confs["pjsip.conf"].objects("transport").values()}
    assert {"udp", "tcp"} <= protocols


_AUTO_ANSWER = re.compile(
    r"call-info|alert-info|answer-after|auto[-_ ]?answer|p-auto-answer|answer-mode|intercom", re.IGNORECASE
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_no_auto_answer_anywhere(confs: dict[str, ConfFile], compose: dict[str, Any]) -> None:
    """Agents accept calls by hand: no auto-answer header, option or dialplan trick."""
    for name, conf in confs.items():
        for section in conf.sections:
            for key, _, value in section.options:
                assert not _AUTO_ANSWER.search(f"{key} {value}"), f"{name} [{section.name}]: {key} = {value}"
    for text in _strings(compose):
        assert not _AUTO_ANSWER.search(text), f"docker-compose.yml: {text!r}"
    for key, value in read_env_example().items():
        assert not _AUTO_ANSWER.search(f"{key}={value}"), f".env.example: {key}"


# --------------------------------------------------------------------------- modules, music, core


# What every module of Asterisk 22 requires at load time, read from the source of the release
# (``tests/data/asterisk-22.10.1-modules.json``: each module's ``AST_MODULE_INFO`` ``.requires``).
# With autoload = no, Asterisk does not load a missing requirement by itself: it refuses the
# module (``res_ari`` has required ``res_websocket_client`` since 22.5), and everything that
# requires the refused module goes with it.
ASTERISK = json.loads((ROOT / "tests" / "data" / "asterisk-22.10.1-modules.json").read_text())
REQUIRES: dict[str, list[str]] = ASTERISK["modules"]
BUILTINS = frozenset(ASTERISK["builtins"])
# Used by the controller over ARI, whatever the dialplan says.
CONTROLLER_NEEDS = (
    "pbx_config",  # loads extensions.conf
    "chan_pjsip",
    "res_pjsip_registrar",
    "res_pjsip_authenticator_digest",
    "res_pjsip_endpoint_identifier_user",
    "res_pjsip_caller_id",  # PAI/RPID: the offer's display
    "res_pjsip_header_funcs",  # PJSIP_HEADER(add,X-Acd-...)
    "res_pjsip_sdp_rtp",
    "func_callerid",  # CONNECTEDLINE(name/num)
    "res_ari_applications",
    "res_ari_asterisk",
    "res_ari_bridges",
    "res_ari_channels",
    "res_ari_endpoints",
    "res_ari_events",
    "res_ari_playbacks",
    "app_stasis",
    "bridge_holding",
    "bridge_simple",
    "chan_bridge_media",  # the announcer channel that plays music into a holding bridge
    "res_musiconhold",
    "res_timing_timerfd",
    "format_pcm",  # the .ulaw sounds and music
    "codec_ulaw",
)
APP_MODULES = {
    "stasis": "app_stasis",
    "queue": "app_queue",
    "playback": "app_playback",
    "log": "app_verbose",
    "verbose": "app_verbose",
    "echo": "app_echo",
    "dial": "app_dial",
    "voicemail": "app_voicemail",
    "execif": "app_exec",
}
BUILTIN_APPS = {
    "answer", "background", "busy", "congestion", "goto", "gotoif", "gotoiftime", "hangup", "noop",
    "progress", "ringing", "set", "mset", "wait", "waitexten",
}  # fmt: skip
FUNCTION_MODULES = {
    "CALLERID": "func_callerid",
    "CONNECTEDLINE": "func_callerid",
    "CHANNEL": "func_channel",
    "PJSIP_HEADER": "res_pjsip_header_funcs",
}


def _loaded_modules(conf: ConfFile) -> set[str]:
    section = conf.one("modules")
    assert section.get("autoload") == "no", "modules.conf: autoload = no with an explicit list"
    loaded, noload = set(), set()
    for key, _, value in section.options:
        name = value.removesuffix(".so")
        if key in ("load", "require", "preload", "preload-require"):
            loaded.add(name)
        elif key == "noload":
            noload.add(name)
        else:
            assert key == "autoload", f"modules.conf: unknown directive {key}"
    assert not loaded & noload
    return loaded


def test_modules_cover_the_controller_and_the_dialplan(
    confs: dict[str, ConfFile], plan: dict[str, dict[str, list[Step]]]
) -> None:
    loaded = _loaded_modules(confs["modules.conf"])
    needed = set(CONTROLLER_NEEDS)
    for step in all_steps(plan):
        app = step.app.lower()
        assert app in APP_MODULES or app in BUILTIN_APPS, (
            f"extensions.conf uses {step.app}: add it to APP_MODULES"
        )
        if app in APP_MODULES:
            needed.add(APP_MODULES[app])
        for func in re.findall(r"([A-Z_]+)\(", step.line):
            if func in FUNCTION_MODULES:
                needed.add(FUNCTION_MODULES[func])
    if confs["pjsip.conf"].objects("identify"):
        needed.add("res_pjsip_endpoint_identifier_ip")
    assert not needed - loaded, f"modules.conf does not load {sorted(needed - loaded)}"


def test_modules_exist_in_asterisk_22_and_have_what_they_require(confs: dict[str, ConfFile]) -> None:
    loaded = _loaded_modules(confs["modules.conf"])
    unknown = sorted(loaded - REQUIRES.keys())
    assert not unknown, f"modules.conf loads modules Asterisk {ASTERISK['asterisk']} does not have: {unknown}"
    for module in sorted(loaded):
        missing = set(REQUIRES[module]) - loaded - BUILTINS
        assert not missing, f"modules.conf loads {module} but not what it requires: {sorted(missing)}"


def test_module_table_is_asterisk_22s() -> None:
    """The table is the release's, not a guess: the facts that broke a real PBX are in it."""
    assert "res_websocket_client" in REQUIRES["res_ari"]
    assert "format_g722" not in REQUIRES and "format_pcm" in REQUIRES  # format_pcm serves .g722
    for module, requires in REQUIRES.items():
        assert set(requires) <= REQUIRES.keys() | BUILTINS, f"{module} requires an unknown module"


def test_default_music_class_exists(confs: dict[str, ConfFile]) -> None:
    """The controller starts a holding bridge's music without naming a class."""
    moh = confs["musiconhold.conf"].one("default")
    assert moh.get("mode") == "files" and moh.get("directory")


def test_entity_id_is_fixed(confs: dict[str, ConfFile]) -> None:
    entityid = confs["asterisk.conf"].one("options").get("entityid", "")
    assert re.fullmatch(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}", entityid or ""), "asterisk.conf: fixed entityid"
    assert entityid not in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff")


def test_rtp_range_is_bounded(confs: dict[str, ConfFile]) -> None:
    rtp = confs["rtp.conf"].one("general")
    start, end = int(rtp.get("rtpstart", "0")), int(rtp.get("rtpend", "0"))
    assert 1024 < start < end <= 65535


# --------------------------------------------------------------------------- docker-compose.yml


def _volume_source(spec: Any, env: dict[str, str]) -> str:
    return interpolate(spec["source"] if isinstance(spec, dict) else str(spec), env).split(":", 1)[0]


def test_compose_services_and_policies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"asterisk", "controller", "sidecar", "postgres"} <= set(services)
    for name in ("asterisk", "controller", "sidecar", "postgres"):
        service = services[name]
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: restart policy"
        assert service.get("healthcheck", {}).get("test"), f"{name}: healthcheck"
    assert services["controller"]["command"] == ["run"]
    assert services["sidecar"]["command"] == ["sidecar"]


def test_compose_references_files_that_exist(compose: dict[str, Any]) -> None:
    env = read_env_example()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            context = ROOT / interpolate(build if isinstance(build, str) else build.get("context", "."), env)
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: build file {dockerfile} missing"
        for spec in service.get("volumes", []):
            source = _volume_source(spec, env)
            if source.startswith((".", "/", "~")):
                assert (ROOT / source).exists(), f"{name}: mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name}: named volume {source} is not declared"
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            if path == ".env":  # each installation writes its own from the example
                assert ENV_EXAMPLE.is_file()
            else:
                assert (ROOT / path).is_file(), f"{name}: env_file {path} missing"


def test_compose_variables_come_from_env_example(compose: dict[str, Any]) -> None:
    env = read_env_example()
    text = COMPOSE.read_text(encoding="utf-8")
    for m in _VAR.finditer(text.replace("$$", "")):
        if m["op"] not in (":-", "-"):
            assert m["name"] in env, f"docker-compose.yml needs {m['name']}; add it to .env.example"


def test_compose_asterisk_uses_this_config_and_reaches_the_phones(
    compose: dict[str, Any], confs: dict[str, ConfFile]
) -> None:
    asterisk = compose["services"]["asterisk"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in asterisk["volumes"] if isinstance(v, str)}
    assert mounts.get("/etc/asterisk") == "./asterisk-config"
    if asterisk.get("network_mode") != "host":  # then SIP and the RTP range must be published
        rtp = confs["rtp.conf"].one("general")
        ports = " ".join(str(p) for p in asterisk.get("ports", []))
        assert "5060" in ports and f"{rtp.get('rtpstart')}-{rtp.get('rtpend')}" in ports


def test_compose_controller_points_at_ari(compose: dict[str, Any], confs: dict[str, ConfFile]) -> None:
    services = compose["services"]
    controller = services["controller"]
    http = confs["http.conf"].one("general")
    url = controller.get("environment", {}).get("ACD_ARI_URL", default("ari_url"))
    assert url == f"http://{http.get('bindaddr')}:{http.get('bindport')}"
    if http.get("bindaddr") in ("127.0.0.1", "::1"):
        assert controller.get("network_mode") == services["asterisk"].get("network_mode") == "host", (
            "ARI on loopback is only reachable from the host's own network namespace"
        )
    assert controller["environment"]["ACD_CONFIG"] == "/etc/acd/acd.toml"


def test_compose_passes_only_known_settings(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        keys = environment if isinstance(environment, dict) else [e.split("=", 1)[0] for e in environment]
        for key in keys:
            if key.startswith("ACD_"):
                assert key[4:].lower() in Settings.model_fields, f"{name}: {key} is not a setting"
    # the health probes fall back to the programs' own default ports
    for service, setting in (("controller", "http_port"), ("sidecar", "sidecar_port")):
        probe = " ".join(compose["services"][service]["healthcheck"]["test"])
        assert f"'ACD_{setting.upper()}', '{default(setting)}'" in probe, f"{service}: probe the default port"
        assert "/healthz" in probe


def test_env_example_matches_ari_conf(confs: dict[str, ConfFile]) -> None:
    env = read_env_example()
    users = confs["ari.conf"].objects("user")
    assert env["ACD_ARI_PASSWORD"] == users[default("ari_user")]["password"][-1], (
        ".env.example ACD_ARI_PASSWORD and ari.conf's password must be the same placeholder"
    )


def test_env_example_only_has_settings_the_programs_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .env copied from the example must not make `acdctl` exit with "unknown setting"."""
    for name in list(os.environ):
        if name.upper().startswith("ACD_"):
            monkeypatch.delenv(name)
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    try:
        load_settings(env_file=env_file)
    except ConfigError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f".env.example is not accepted by the controller's settings:\n{exc}")


# --------------------------------------------------------------------------- Dockerfile


def _stages(text: str) -> list[list[str]]:
    """Dockerfile instructions (continuations joined, comments dropped), split by FROM."""
    instructions, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        cur += line.removesuffix("\\") + " "
        if not line.endswith("\\"):
            instructions.append(cur.strip())
            cur = ""
    stages: list[list[str]] = []
    for ins in instructions:
        if ins.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_dockerfile_multi_stage_slim_non_root() -> None:
    stages = _stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) >= 2, "build the wheel in one stage, run from another"
    final = stages[-1]
    assert any(ins.upper().startswith("COPY --FROM=") for ins in final), "final stage copies the built venv"
    users = [ins.split(None, 1)[1] for ins in final if ins.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as an unprivileged user"
    assert 'ENTRYPOINT ["acdctl"]' in final
    assert any(ins.upper().startswith("HEALTHCHECK ") for ins in final)
    final_text = " ".join(final).lower()
    for tool in ("build-essential", "gcc", "apt-get install"):
        assert tool not in final_text, f"no build tools in the final image ({tool})"
    for stage in stages:
        for ins in stage:
            if ins.upper().startswith(("COPY ", "ADD ")) and "--from=" not in ins.lower():
                for source in ins.split()[1:-1]:
                    assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if patterns[0] != "*":
        assert {".env", ".venv", ".git"} <= set(patterns)
    else:
        assert not any(p.startswith("!") and (".env" in p or ".venv" in p) for p in patterns)
