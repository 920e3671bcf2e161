"""The OpenAPI description and the code agree: schemathesis fuzzes the live API (bounded).

Runs the ``st`` CLI against the app served by this test's event loop (simulator + SQLite), once
with the admin token and once with an agent's, with every check on: 5xx, undocumented status
codes, schema-violating data accepted, 405 without ``Allow``, ... A fixed seed and a bounded
number of examples keep it reproducible and a few tens of seconds long.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from tests.api.conftest import ALICE_TOKEN
from tests.stack import ADMIN

pytest.importorskip("schemathesis")

_ST = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"
# ignored_auth: the panel page, its assets and /healthz need no token on purpose.
_EXCLUDE = "ignored_auth"


async def _run_st(base: str, token: str, tmp_path) -> tuple[int, str]:
    env = dict(os.environ, SCHEMATHESIS_HOOKS="", NO_COLOR="1", SCHEMATHESIS_TELEMETRY="false")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ST, "run", f"{base}/api/openapi.json",
        "-H", f"Authorization: Bearer {token}",
        "--checks", "all", "--exclude-checks", _EXCLUDE,
        "--max-examples", os.environ.get("ACD_FUZZ_EXAMPLES", "30"),
        "--seed", "1", "--workers", "1", "--no-shrink",
        "--phases", "examples,coverage,fuzzing",
        "--request-timeout", "10",
        "--exclude-path", "/api/agents/{agent_id}/stream",
        "--exclude-path", "/api/wallboard/stream",
        cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.parametrize("token", [ADMIN, ALICE_TOKEN], ids=["admin", "agent"])
async def test_openapi_description_holds_under_fuzzing(stack, token, tmp_path):
    code, out = await _run_st(stack.services.url, token, tmp_path)
    assert code == 0, out[-20000:]
