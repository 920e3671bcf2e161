"""Long randomized run of the engine's model-based property test (tests/acd/test_invariants.py).

CI replays a fixed set of sequences (``derandomize=True``) so that it is repeatable; this runs
fresh random sequences for a time budget, to find what the fixed set does not cover. A failure
prints hypothesis' shrunk reproduction (paste it into a test) and exits 1.

Run: ``python bench/run.py acd_fuzz [--minutes 10] [--examples-per-batch 500] [--steps 100]``.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acd_fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget (default 10)")
    parser.add_argument("--examples-per-batch", type=int, default=500)
    parser.add_argument("--steps", type=int, default=100, help="events per sequence (default 100)")
    parser.add_argument(
        "--no-shrink", dest="shrink", action="store_false", help="report a failure as found (faster)"
    )
    args = parser.parse_args(argv)

    from tests.acd.test_invariants import run

    deadline = time.monotonic() + args.minutes * 60
    batches = events = 0
    start = time.monotonic()
    while True:
        try:
            events += run(args.examples_per_batch, derandomize=False, steps=args.steps, shrink=args.shrink)
        except Exception as exc:  # hypothesis has already printed the shrunk sequence
            print(f"FAILED after {batches} clean batches: {type(exc).__name__}: {exc}")
            return 1
        batches += 1
        if time.monotonic() >= deadline:
            break
    elapsed = time.monotonic() - start
    print(
        f"acd_fuzz: {batches} batches x {args.examples_per_batch} random sequences, {events} events, "
        f"{elapsed:.0f} s, no invariant broken"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
