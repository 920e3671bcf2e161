"""The panel's time formatting survives odd numbers from the server (run under node when present)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources

from tests.ci import unavailable

NODE = shutil.which("node")


def _function(source: str, name: str) -> str:
    match = re.search(rf"^function {name}\(.*?^}}$", source, re.MULTILINE | re.DOTALL)
    assert match, f"panel.js has no top-level function {name}"
    return match[0]


def test_times_beyond_what_a_date_holds_render_as_nothing_not_an_exception() -> None:
    if NODE is None:
        unavailable("node is not installed: apt-get install nodejs (.ci/run does)")
    source = (resources.files("controller.panel") / "static" / "panel.js").read_text("utf-8")
    script = "\n".join(
        [
            'const state = { lang: "en" };',
            *(_function(source, name) for name in ("validDate", "formatTime", "formatDateTime")),
            "console.log(JSON.stringify([",
            "  formatTime(1e300 * 1000), formatTime(Infinity), formatTime(NaN), formatDateTime(1e303),",
            "  validDate(null), validDate(1e300 * 1000), formatTime(1786629725000) !== '',",
            "]));",
        ]
    )
    done = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=30)  # type: ignore[list-item]
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["", "", "", "", None, None, True]
