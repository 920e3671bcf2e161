"""The wallboard page's own checks: every string it shows exists in both languages, nothing is
inserted as HTML, and the chart axis helper gives round ticks (node, when present)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources

import pytest

NODE = shutil.which("node")
STATIC = resources.files("controller.wallboard") / "static"


def _read(name: str) -> str:
    return (STATIC / name).read_text("utf-8")


def _tables() -> dict[str, set[str]]:
    source = _read("i18n.js")
    blocks = re.split(r'^  (?:"pt-BR"|en): \{$', source, flags=re.MULTILINE)[1:]
    assert len(blocks) == 2, "i18n.js should hold pt-BR then en"
    return {
        lang: set(re.findall(r'^    "([^"]+)":', b, re.MULTILINE))
        for lang, b in zip(("pt-BR", "en"), blocks, strict=True)
    }


def test_both_languages_have_the_same_strings_and_every_one_the_page_uses():
    tables = _tables()
    assert tables["pt-BR"] == tables["en"], tables["pt-BR"] ^ tables["en"]
    used = set(re.findall(r'data-i18n="([^"]+)"', _read("index.html")))
    script = _read("wallboard.js")
    used |= set(re.findall(r'\bt\("([^"]+)"', script))
    for prefix in re.findall(r"t\(`([a-z_]+)\.\$\{", script):  # t(`state.${s}`) and the like
        assert any(k.startswith(prefix + ".") for k in tables["en"]), prefix
    missing = used - tables["en"]
    assert not missing, missing
    states = {"ready", "ringing", "talking", "wrapup", "delayed", "paused", "not_responding", "logged_out"}
    assert {f"state.{s}" for s in states | {"unreachable"}} <= tables["en"]


def test_no_text_reaches_the_page_as_html():
    for name in ("wallboard.js", "charts.js"):
        source = _read(name)
        assert "innerHTML" not in source and "insertAdjacentHTML" not in source, name
        assert "eval(" not in source and "new Function" not in source, name


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_chart_axis_tops_make_round_ticks():
    source = _read("charts.js")
    body = re.search(r"^function niceMax\(.*?^}$", source, re.MULTILINE | re.DOTALL)
    assert body
    script = body[0] + "\nconsole.log(JSON.stringify([0, 1, 3, 4, 5, 9, 37, 120].map(niceMax)));"
    done = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=30)  # type: ignore[list-item]
    assert done.returncode == 0, done.stderr
    tops = json.loads(done.stdout)
    assert tops == [4, 4, 4, 4, 8, 20, 40, 200]
    assert all(top % 4 == 0 for top in tops)  # four grid steps of whole numbers
