"""The error catalog covers every code of ERRORS.md, in both languages, with the table's retry class."""

from __future__ import annotations

import re

import pytest

from controller.whatsapp.errors import CATALOG, RetryClass, backoff_seconds, explain, retry_class
from tests.whatsapp.conftest import FIXTURES


def errors_md_rows() -> list[tuple[list[int], str]]:
    """(codes, class) for every row of the table in ERRORS.md, ranges like 200-299 expanded."""
    rows = []
    for line in (FIXTURES / "ERRORS.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not re.match(r"^\d", cells[0]):
            continue
        codes: list[int] = []
        for part in re.split(r"[,/]", cells[0]):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-"))
                codes.extend(range(lo, hi + 1))
            else:
                codes.append(int(part))
        rows.append((codes, cells[4].split()[0]))
    return rows


ROWS = errors_md_rows()


def test_the_table_was_read() -> None:
    assert len(ROWS) == 34  # every row of the table
    assert ([130472], "P") in ROWS and ([131056], "T") in ROWS


@pytest.mark.parametrize(("codes", "cls"), ROWS, ids=[str(c[0]) for c, _ in ROWS])
def test_every_code_has_texts_and_the_tables_retry_class(codes: list[int], cls: str) -> None:
    for code in codes:
        assert code in CATALOG, code
        entry = CATALOG[code]
        assert entry.retry.value == cls, code
        for text in (entry.pt_br, entry.en):
            assert text.title and text.explanation and text.action, code
        assert entry.pt_br.title != entry.en.title or code in (131026, 131057, 133010, 131051), code
        explained = explain(code)
        assert explained["known"] and set(explained) >= {"pt_BR", "en", "retry_class"}


def test_the_issues_examples() -> None:
    exp = explain(130472)["en"]
    assert "Meta experiment" in exp["title"] and "marketing" in exp["explanation"]
    exp = explain(131047)
    assert exp["en"]["title"] == "Conversation session not open: the 24-hour window is closed"
    assert "send an approved template" in exp["en"]["action"].lower()
    assert exp["pt_BR"]["action"].startswith("Envie um template aprovado")


def test_retry_policy() -> None:
    assert [backoff_seconds(131056, n) for n in (1, 2, 3, 4)] == [4.0, 16.0, 64.0, None]
    assert backoff_seconds(131000, 2) is not None and backoff_seconds(131000, 3) is None
    assert backoff_seconds(132001, 1) is None  # permanent
    assert backoff_seconds(131049, 1) is None  # only after >= 24 h, never automatically
    assert retry_class(190) is RetryClass.CHANNEL and retry_class(250) is RetryClass.CHANNEL
    assert retry_class(131049) is RetryClass.DELAYED
    assert retry_class(424242) is RetryClass.PERMANENT  # unknown: the agent decides


def test_unknown_code_falls_back_to_metas_own_words() -> None:
    exp = explain(777, title="Shiny new error", details="Because reasons")
    assert exp["known"] is False
    assert exp["en"]["title"] == exp["pt_BR"]["title"] == "Shiny new error"
    assert "Because reasons" in exp["en"]["explanation"] and "Because reasons" in exp["pt_BR"]["explanation"]
    assert explain(None)["pt_BR"]["title"] == "Meta error"
