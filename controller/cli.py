"""``acdctl``: the admin's command line (run the controller, run the demo, check a config).

Config problems are the admin's to fix, so they come out as plain lines on stderr with exit
code 2 and nothing starts; tracebacks are reserved for our own bugs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.acd.setup import Acceptance, AcdSetup, QueueConfig
from controller.config import (
    MIN_SECRET,
    ConfigError,
    Settings,
    load_settings,
    load_setup,
    redact_url,
    setup_warnings,
)
from controller.harness import cli as harness_cli
from controller.logs import setup_logging

__all__ = ["build_parser", "format_summary", "main"]

EXIT_OK = 0
EXIT_CONFIG = 2  # same code argparse uses for usage errors
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

log = logging.getLogger("controller.cli")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _agent_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number 1-100, got {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a whole number 1-100, got {text!r}")
    return value


def _version() -> str:
    try:
        return importlib.metadata.version("acd-controller")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


CONFIG_HELP = "queue/agent TOML file (default: $ACD_CONFIG, else ./acd.toml)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acdctl",
        description="Contact-center routing for Asterisk over ARI: agents accept calls, no auto-answer.",
        epilog="Settings come from ACD_* environment variables or a .env file; see README.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def logging_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--log-level",
            type=str.upper,
            choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
            help="override ACD_LOG_LEVEL",
        )
        p.add_argument("--log-format", choices=("text", "json"), help="override ACD_LOG_FORMAT")

    run = sub.add_parser("run", help="connect to Asterisk (ARI) and route calls")
    run.add_argument(
        "--config", type=Path, metavar="PATH", help="queue/agent TOML file (default: ACD_CONFIG)"
    )
    logging_options(run)

    demo = sub.add_parser("demo", help="route calls on a simulated Asterisk, no PBX needed")
    demo.add_argument(
        "--duration",
        type=_non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="wall-clock seconds to run (default: 30; 0 = until Ctrl-C)",
    )
    demo.add_argument(
        "--speed",
        type=_positive_float,
        default=10.0,
        metavar="X",
        help="simulated time runs X times faster than real time (default: 10)",
    )
    demo.add_argument("--seed", type=int, default=1, metavar="N", help="random seed for callers (default: 1)")
    demo.add_argument(
        "--agents", type=_agent_count, default=6, metavar="N", help="number of simulated agents (default: 6)"
    )
    demo.add_argument(
        "--panel",
        action="store_true",
        help="real-time clock, run until Ctrl-C: for taking offers yourself in the agent panel",
    )
    logging_options(demo)

    sidecar = sub.add_parser("sidecar", help="run the WhatsApp sidecar (webhook, agent API and stream)")
    sidecar.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="queue/agent TOML file with the agents' token_sha256 (default: ACD_CONFIG)",
    )
    logging_options(sidecar)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply database migrations (ACD_DATABASE_URL) up to the latest")

    check = sub.add_parser("check-config", help="validate settings and the queue/agent file, print a summary")
    check.add_argument(
        "--config", type=Path, metavar="PATH", help="queue/agent TOML file (default: ACD_CONFIG)"
    )
    harness_cli.add_parser(sub)  # `acdctl harness check|load` (optional extra, see README)
    return parser


# --------------------------------------------------------------------------- summary


def _secs(value: float) -> str:
    return f"{value:g}s"


def _acceptance(queue: QueueConfig) -> str:
    if queue.acceptance is Acceptance.CONFIRM:
        return f"confirm ({_secs(queue.confirm_timeout)} to press 1/2)"
    return queue.acceptance.value


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def format_summary(setup: AcdSetup, path: Path | str, settings: Settings | None = None) -> str:
    """The human-readable view of a validated config that ``check-config`` prints."""
    lines = [f"{path}: OK, {len(setup.queues)} queue(s), {len(setup.agents)} agent(s)", "", "Queues"]
    members: dict[str, list[str]] = {name: [] for name in setup.queues}
    for agent in setup.agents.values():
        for m in agent.queues:
            members[m.queue].append(agent.id if m.penalty == 0 else f"{agent.id}(penalty {m.penalty})")
    rows = [["NAME", "STRATEGY", "RING", "ACCEPT", "HOLD", "WRAPUP", "MAX WAIT", "ON MAX WAIT", "AGENTS"]]
    for q in setup.queues.values():
        rows.append(
            [
                q.name,
                q.strategy.value,
                _secs(q.ring_timeout),
                _acceptance(q),
                q.hold.value,
                _secs(q.wrapup),
                _secs(q.max_wait) if q.max_wait else "no limit",
                (f"-> {q.overflow}" if q.overflow else "hang up") if q.max_wait else "-",
                ", ".join(members[q.name]) or "(none)",
            ]
        )
    lines += _table(rows)
    lines += ["", "Pauses after a failed offer (agent), retry (caller), per queue"]
    rows = [["QUEUE", "REJECT", "BUSY", "NO ANSWER", "UNREACHABLE", "NOT RESPONDING", "RETRY", "JOIN EMPTY"]]
    for q in setup.queues.values():
        rows.append(
            [
                q.name,
                _secs(q.reject_delay),
                _secs(q.busy_delay),
                _secs(q.no_answer_delay),
                _secs(q.unreachable_delay),
                f"after {q.max_no_answer} misses" if q.max_no_answer else "never",
                _secs(q.retry),
                "yes" if q.join_empty else "no",
            ]
        )
    lines += _table(rows)

    lines += ["", "Agents"]
    if setup.agents:
        rows = [["ID", "NAME", "ENDPOINT", "STARTS", "QUEUES (PENALTY)"]]
        for a in setup.agents.values():
            queues = ", ".join(m.queue if m.penalty == 0 else f"{m.queue} ({m.penalty})" for m in a.queues)
            rows.append([a.id, a.name, a.endpoint, a.state.value, queues or "(none)"])
        lines += _table(rows)
    else:
        lines.append("  (none)")

    if settings is not None:
        password = (
            "(set)" if settings.ari_password.get_secret_value() else "(not set; required by `acdctl run`)"
        )
        rows = [
            ["ari_url", settings.ari_url],
            ["ari_user", settings.ari_user],
            ["ari_password", password],
            ["ari_app", settings.ari_app],
            ["database_url", redact_url(settings.database_url)],
            ["http", f"{settings.http_host}:{settings.http_port}"],
            ["log", f"{settings.log_level} {settings.log_format}"],
        ]
        lines += ["", "Settings (ACD_* environment / .env)", *_table(rows)]

    warnings = [f"{path}: {w}" for w in setup_warnings(setup)]
    warnings += [f"settings: {w}" for w in (secret_warnings(settings) if settings is not None else [])]
    if warnings:
        lines += ["", "Warnings"] + [f"  {w}" for w in warnings]
    return "\n".join(lines)


# --------------------------------------------------------------------------- commands


def secret_warnings(settings: Settings) -> list[str]:
    return [
        f"{name}: shorter than {MIN_SECRET} characters; easy to guess, and not masked by value in logs"
        for name in settings.short_secrets()
    ]


def _start_logging(settings: Settings) -> None:
    setup_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    for warning in secret_warnings(settings):
        log.warning("settings: %s", warning)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        config=getattr(args, "config", None),
        log_level=getattr(args, "log_level", None),
        log_format=getattr(args, "log_format", None),
    )


def _finish(result: Any) -> int:
    """Accept either a plain exit code or a coroutine from controller.app."""
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    return int(result or 0)


class _AppMissing(Exception):
    """controller.app isn't installed (partial checkout): say so instead of a traceback."""


def _app(name: str = "controller.app") -> Any:
    """Import the application (or the demo, which builds on it) lazily so check-config works
    without their heavy imports."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name not in (name, "controller.app"):
            raise
        raise _AppMissing(f"acdctl: {exc.name} is missing from this installation") from None


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    setup = load_setup(settings.config)
    print(format_summary(setup, settings.config, settings))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    setup = load_setup(settings.config)
    settings.require_ari_password()
    _start_logging(settings)
    for warning in setup_warnings(setup):
        log.warning("config: %s", warning, extra={"config": str(settings.config)})
    return _finish(_app().run_controller(settings, setup))


def _cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _start_logging(settings)
    return _finish(_app("controller.demo").run_demo(args))


def _cmd_sidecar(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _start_logging(settings)
    from controller.whatsapp.service import WhatsAppConfig, run_sidecar

    config = WhatsAppConfig.from_settings(settings)  # the queue file's token hashes; ConfigError -> 2
    return _finish(run_sidecar(config))


async def _db_upgrade(settings: Settings) -> int:
    from controller.store import create_engine, upgrade

    engine = create_engine(settings.database_url)
    try:
        revision = await upgrade(engine)
    finally:
        await engine.dispose()
    print(f"{redact_url(settings.database_url)}: at revision {revision}")
    return EXIT_OK


def _cmd_db(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _start_logging(settings)
    return _finish(_db_upgrade(settings))


_COMMANDS = {
    "run": _cmd_run,
    "demo": _cmd_demo,
    "check-config": _cmd_check_config,
    "sidecar": _cmd_sidecar,
    "db": _cmd_db,
    "harness": harness_cli.main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``acdctl``; returns the exit code (the console script passes it to sys.exit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except _AppMissing as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("acdctl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `acdctl check-config | head`: the reader left; don't print a traceback on exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
