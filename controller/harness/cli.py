"""``acdctl harness check|load``: argument parsing and output; the work is in check.py / load.py.

Imports of the SIP side happen only when a harness command runs, so ``acdctl`` works (and
``acdctl harness --help`` explains what to install) without the harness extra.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

MISSING = (
    "acdctl harness needs the optional harness extra (the pjsua2-python wheel and matplotlib):\n"
    "    pip install 'acd-controller[harness]'      (from a checkout: pip install -e '.[harness]')\n"
    "The pjsua2-python wheel exists for CPython 3.11/3.12 on Linux x86_64 (glibc)."
)


def _exten_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        queue, sep, exten = item.partition("=")
        if not sep or not queue or not exten:
            raise argparse.ArgumentTypeError(f"--exten wants QUEUE=EXTENSION, got {item!r}")
        out[queue] = exten
    return out


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates wants numbers like 20,50, got {text!r}") from None
    if not rates or any(not 0 < r <= 500 for r in rates):
        raise argparse.ArgumentTypeError("--rates: each rate must be > 0 and <= 500 calls/s")
    return rates


def add_parser(sub: Any) -> None:
    """Add ``harness`` to acdctl's subcommands."""
    env = os.environ.get
    h = sub.add_parser(
        "harness",
        help="real SIP phones and callers: check a deployment, load-test it against app_queue",
        description=MISSING.splitlines()[0].replace("needs", "needs (installed separately)"),
    )
    hs = h.add_subparsers(dest="harness_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", type=Path, metavar="PATH", help="queue/agent TOML file (default: ACD_CONFIG)"
        )
        p.add_argument(
            "--pbx", default="127.0.0.1:5060", help="Asterisk's SIP address (default 127.0.0.1:5060)"
        )
        p.add_argument(
            "--agent-password",
            default=env("ACD_HARNESS_AGENT_PASSWORD", "change-me-{user}"),
            help="agents' SIP password; {user} = endpoint name (default: $ACD_HARNESS_AGENT_PASSWORD "
            "or change-me-{user}, the shipped placeholders)",
        )
        p.add_argument("--caller-user", default=env("ACD_HARNESS_CALLER_USER", "harness"))
        p.add_argument("--caller-password", default=env("ACD_HARNESS_CALLER_PASSWORD", "change-me-harness"))
        p.add_argument("--ari-url", default=env("ACD_ARI_URL", "http://127.0.0.1:8088"))
        p.add_argument("--ari-user", default=env("ACD_ARI_USER", "acd"))
        p.add_argument("--ari-password", default=env("ACD_ARI_PASSWORD", ""))
        p.add_argument("--events", default="", metavar="PATH", help="write every SIP event (JSON lines) here")

    check = hs.add_parser(
        "check", help="run the built-in scenarios, print a pass/fail table (exit 1 on a failure)"
    )
    common(check)
    check.add_argument(
        "--exten",
        action="append",
        default=[],
        metavar="QUEUE=EXT",
        help="extension that reaches a queue, e.g. support=101 (repeat per queue)",
    )
    check.add_argument(
        "--queue", default="", help="queue for the basic scenarios (default: first with 2+ agents)"
    )
    check.add_argument("--api-url", default=env("ACD_HARNESS_API_URL", "http://127.0.0.1:8080"))
    check.add_argument(
        "--api-token", default=env("ACD_ADMIN_TOKEN", ""), help="admin token (desktop scenario)"
    )

    load = hs.add_parser("load", help="N calls/s for T s: the controller vs app_queue, percentiles + plot")
    common(load)
    load.add_argument("--exten", required=True, help="extension of the controller's queue (e.g. 101)")
    load.add_argument(
        "--compare-exten", default="", help="extension of the app_queue queue with the same agents"
    )
    load.add_argument("--queue", default="", help="agents of this queue answer (default: every agent)")
    load.add_argument(
        "--rates", type=_rates, default=[20.0], help="calls per second, e.g. 20,50 (default 20)"
    )
    load.add_argument("--duration", type=float, default=30.0, help="seconds of offering per run (default 30)")
    load.add_argument(
        "--agents",
        default="answer:0.2:1,answer:0.5:1,decline:0.2,busy",
        help="behaviours cycled over the agents (mode[:ring_s[:talk_s]], default %(default)s)",
    )
    load.add_argument("--patience", type=float, default=30.0, help="caller gives up after this many s")
    load.add_argument(
        "--out", type=Path, default=Path("harness-load"), help="folder for load.json and load.png"
    )
    load.add_argument(
        "--capture",
        choices=("auto", "on", "off"),
        default="auto",
        help="time from the kernel's stamps of the SIP packets (needs root or CAP_NET_RAW; auto: when "
        "permitted, else the phones' stamps; on: refuse to run without it)",
    )
    load.add_argument(
        "--phones-nice",
        type=int,
        default=10,
        metavar="N",
        help="run the phone processes at this nice level so that, on the PBX's own machine, they "
        "leave the CPU to Asterisk and the controller (0: same priority; default %(default)s)",
    )


def _deployment(args: argparse.Namespace) -> Any:
    from controller.config import load_setup
    from controller.harness.check import Deployment

    path = args.config or os.environ.get("ACD_CONFIG") or "acd.toml"
    setup = load_setup(Path(path))
    return Deployment(
        setup=setup,
        extensions=_exten_map(getattr(args, "exten_list", [])),
        pbx=args.pbx,
        ari_url=args.ari_url,
        ari_user=args.ari_user,
        ari_password=args.ari_password,
        api_url=getattr(args, "api_url", ""),
        api_token=getattr(args, "api_token", ""),
        caller_user=args.caller_user,
        caller_password=args.caller_password,
        agent_password=args.agent_password,
        queue=args.queue,
        events_path=args.events,
    )


def main(args: argparse.Namespace) -> int:
    args.exten_list = args.exten if args.harness_command == "check" else []
    try:
        dep = _deployment(args)
    except argparse.ArgumentTypeError as exc:
        print(f"acdctl harness: {exc}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("pjsua2") is None:
        print(MISSING, file=sys.stderr)
        return 2
    from controller.harness.ua import HarnessError

    try:
        if args.harness_command == "check":
            return asyncio.run(_check(dep))
        args.events_path_obj = Path(args.events) if args.events else None
        return asyncio.run(_load(args, dep))
    except HarnessError as exc:  # a bad --pbx, no route to it: said in one line
        print(f"acdctl harness: {exc}", file=sys.stderr)
        return 2


async def _check(dep: Any) -> int:
    from controller.harness.check import exit_code, format_results, run_check

    def progress(name: str) -> None:
        print(f"  running: {name}", file=sys.stderr, flush=True)

    results = await run_check(dep, progress=progress)
    print(format_results(results))
    return exit_code(results)


async def _load(args: argparse.Namespace, dep: Any) -> int:
    from controller.harness.capture import CaptureUnavailable, SipCapture, interface_towards
    from controller.harness.load import LoadPlan, ProgressBar, mixed_behaviours, run_load
    from controller.harness.report import format_table, plot, write_json
    from controller.harness.ua import CALLS_PER_WORKER, UaGroup, local_address_towards, split_pbx

    agent_ids = [
        a.id
        for a in dep.setup.agents.values()
        if not args.queue or any(m.queue == args.queue for m in a.queues)
    ]
    behaviours = mixed_behaviours(args.agents.split(","), len(agent_ids))
    # a call holds a caller slot from INVITE to hang-up (ring + talk + refusals): ~2 s each
    n_callers = max(2, math.ceil(max(args.rates) * 2 / CALLS_PER_WORKER))
    capture = None
    if args.capture != "off":
        host, port = split_pbx(dep.pbx)
        capture = SipCapture(port, interface_towards(host))
        try:
            capture.start()
        except CaptureUnavailable as exc:
            if args.capture == "on":
                print(f"acdctl harness load: {exc}", file=sys.stderr)
                return 2
            print(f"note: timing from the phones' own stamps: {exc}", file=sys.stderr)
            capture = None
    nice, bind = max(0, args.phones_nice), local_address_towards(dep.pbx)
    agents = UaGroup("agents", nice=nice, bind=bind)  # a worker process per PHONES_PER_WORKER agents
    callers = [UaGroup(f"callers{i}", nice=nice, bind=bind) for i in range(n_callers)]
    runs: list[dict[str, Any]] = []
    try:
        await agents.start()
        for agent_id, behaviour in zip(agent_ids, behaviours, strict=True):
            user = dep.user_of(agent_id)
            password = dep.agent_password.format(user=user)
            await agents.add_agent(agent_id, behaviour, user=user, password=password, registrar=dep.pbx)
        for group in callers:
            await group.start()
            await group.add_caller("caller", user=dep.caller_user, password=dep.caller_password, host=dep.pbx)
        targets = [("controller", args.exten)]
        if args.compare_exten:
            targets.append(("app_queue", args.compare_exten))
        for rate in args.rates:
            for label, exten in targets:
                plan = LoadPlan(rate, args.duration, exten, label, patience=args.patience)
                bar = ProgressBar(sys.stderr, f"{label:>10} {rate:g}/s")
                runs.append(await run_load(plan, [agents], callers, dep.pbx, progress=bar, capture=capture))
                await asyncio.sleep(2)  # let wrap-up and pauses of the previous run pass
    finally:
        if capture is not None:
            capture.stop()
        for group in [*callers, agents]:
            await group.close()
        if args.events:
            events = sorted((e for g in [*callers, agents] for e in g.events), key=lambda e: e["t"])
            args.events_path_obj.write_text("".join(json.dumps(e) + "\n" for e in events))
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pbx": dep.pbx,
        "agents": {a: str(b) for a, b in zip(agent_ids, behaviours, strict=True)},
        "duration_s": args.duration,
        "patience_s": args.patience,
    }
    json_path = write_json(runs, args.out / "load.json", meta)
    png_path = plot(runs, args.out / "load.png")
    print(format_table(runs))
    print(f"\nwrote {json_path} and {png_path}")
    bad = sum(r["failed"] + r["unfinished"] for r in runs)
    return 1 if bad else 0
