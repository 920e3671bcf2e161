"""Load-test output: the JSON file, the table a person reads, and the PNG of percentiles vs load."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.harness.load import METRICS


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_table(runs: Sequence[dict[str, Any]]) -> str:
    head = ["TARGET", "RATE/S", "OFFERED", "ANSWERED", "ABANDONED", "FAILED", "SETUPS/S"]
    for key in METRICS:
        head += [f"{key} p50/p95/p99 ms"]
    head.append("ERRORS")
    rows = [head]
    for r in runs:
        row = [
            r["label"],
            f"{r['rate']:g}",
            str(r["offered"]),
            str(r["answered"]),
            str(r["abandoned"]),
            str(r["failed"] + r.get("unfinished", 0)),
            "-" if r.get("offered_per_s") is None else f"{r['offered_per_s']:.1f}",
        ]
        for key in METRICS:
            p = r["percentiles_ms"][key]
            row.append(f"{_ms(p['p50'])}/{_ms(p['p95'])}/{_ms(p['p99'])} (n={p['n']})")
        row.append(str(r.get("error_count", 0)))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    legend = [f"  {k}: {text}" for k, text in METRICS.items()]
    return "\n".join([*lines, "", *legend, clock_line(runs)])


def clock_line(runs: Sequence[dict[str, Any]]) -> str:
    """Which stamps the figures come from: the kernel's (captured packets) or the phones'."""
    if runs and all(r.get("clock") == "packets" for r in runs):
        missing = sum(r.get("unmatched", 0) for r in runs)
        tail = f"; {missing} events without a captured packet kept the phone's stamp" if missing else ""
        return f"  times: kernel stamps of the SIP packets (captured){tail}"
    return "  times: the phones' own stamps (no packet capture: run as root for the kernel's)"


def write_json(runs: Sequence[dict[str, Any]], path: Path, meta: dict[str, Any] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta or {}, "runs": list(runs)}, indent=2) + "\n")
    return path


def plot(runs: Sequence[dict[str, Any]], path: Path) -> Path:
    """One panel per delay; x = offered calls/s, one line per target and percentile."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4), squeeze=False)
    labels = sorted({r["label"] for r in runs})
    styles = {"p50": "-", "p95": "--", "p99": ":"}
    for ax, (key, title) in zip(axes[0], METRICS.items(), strict=True):
        for i, label in enumerate(labels):
            mine = sorted((r for r in runs if r["label"] == label), key=lambda r: r["rate"])
            for pct, style in styles.items():
                xs = [r["rate"] for r in mine if r["percentiles_ms"][key][pct] is not None]
                ys = [
                    r["percentiles_ms"][key][pct] for r in mine if r["percentiles_ms"][key][pct] is not None
                ]
                if xs:
                    ax.plot(xs, ys, style, marker="o", color=f"C{i}", label=f"{label} {pct}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("calls offered per second")
        ax.set_ylabel("ms")
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
