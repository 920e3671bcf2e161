"""Run one benchmark: ``python bench/run.py [name] [args...]`` (``make bench ARGS="engine --quick"``).

Each benchmark is a module with ``main(argv: list[str] | None) -> int``; to add one, add a line
to ``BENCHMARKS``. Without a name, ``DEFAULT`` runs; the remaining arguments go to the benchmark.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHMARKS: dict[str, str] = {
    "engine": "bench.engine",  # Engine.handle() cost per event, 100 -> 10,000 agents
    "ari": "bench.ari",
    "whatsapp": "bench.whatsapp",  # webhook ingest throughput and push latency, SQLite and PostgreSQL
    "store": "bench.store",  # history writer: reaction p99 with/without persistence, write throughput
    "panel": "bench.panel",  # what open agent panels cost the event loop, per offer and per tick
    "acd_fuzz": "bench.acd_fuzz",  # the engine's model-based property test on fresh random sequences
    "wallboard": "bench.wallboard",  # what open supervisor wallboards cost the event loop
}
DEFAULT = "engine"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-l", "--list"):
        print("\n".join(BENCHMARKS))
        return 0
    name = args.pop(0) if args and not args[0].startswith("-") else DEFAULT
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)  # `python bench/run.py` puts bench/, not the repo, on the path
    module = importlib.import_module(BENCHMARKS[name])
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
