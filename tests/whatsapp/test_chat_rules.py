"""The pure status rule: explicit cases, and any permutation/duplication converges (hypothesis)."""

from __future__ import annotations

from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.whatsapp.chat import (
    MessageState,
    MetaError,
    StatusUpdate,
    apply_status,
    window_open,
)

E47 = MetaError(131047, "Re-engagement message")
E26 = MetaError(131026, "Message undeliverable")


def run(*updates: StatusUpdate) -> MessageState:
    return reduce(apply_status, updates, MessageState())


def test_monotonic_and_read_without_delivered() -> None:
    assert run(StatusUpdate("sent", 1), StatusUpdate("read", 3)).status == "read"
    assert (
        run(StatusUpdate("read", 3), StatusUpdate("sent", 1), StatusUpdate("delivered", 2)).status == "read"
    )


def test_failed_applies_while_pending_or_sent_only() -> None:
    state = run(StatusUpdate("sent", 1), StatusUpdate("failed", 2, E47))
    assert state.status == "failed" and state.error == E47
    state = run(StatusUpdate("delivered", 2), StatusUpdate("failed", 3, E47))
    assert state.status == "delivered" and state.error is None


def test_delivered_after_failed_moves_on_sent_does_not() -> None:
    failed = run(StatusUpdate("failed", 2, E47))
    assert apply_status(failed, StatusUpdate("sent", 1)) == failed
    moved = apply_status(failed, StatusUpdate("delivered", 3))
    assert moved.status == "delivered" and moved.error is None


def test_duplicates_change_nothing() -> None:
    once = run(StatusUpdate("sent", 1), StatusUpdate("failed", 2, E26))
    assert apply_status(once, StatusUpdate("failed", 2, E26)) == once
    assert apply_status(once, StatusUpdate("sent", 1)) == once


def test_competing_failures_show_the_earliest() -> None:
    a = run(StatusUpdate("failed", 5, E26), StatusUpdate("failed", 4, E47))
    b = run(StatusUpdate("failed", 4, E47), StatusUpdate("failed", 5, E26))
    assert a == b and a.error == E47 and a.status_ts == 4


def test_unknown_is_overridden_by_any_report_and_unknown_words_are_ignored() -> None:
    assert run(StatusUpdate("unknown", 9, source="send"), StatusUpdate("sent", 1)).status == "sent"
    assert run(StatusUpdate("sent", 1), StatusUpdate("unknown", 9, source="send")).status == "sent"
    assert run(StatusUpdate("sent", 1), StatusUpdate("deleted", 2)).status == "sent"


def test_window() -> None:
    assert window_open(1000.0, 1000.0 + 24 * 3600 - 1)
    assert not window_open(1000.0, 1000.0 + 24 * 3600)
    assert not window_open(None, 0.0)


updates = st.builds(
    StatusUpdate,
    status=st.sampled_from(["sent", "delivered", "read", "failed", "unknown", "played", "bogus"]),
    ts=st.integers(0, 20).map(float),
    error=st.sampled_from([None, E47, E26, MetaError(131000, "x", fbtrace_id="F")]),
    source=st.sampled_from(["webhook", "send"]),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(updates, min_size=1, max_size=12), st.randoms(use_true_random=False), st.data())
def test_any_permutation_and_duplication_converges(batch, rnd, data) -> None:
    # ``failed`` reports carry their error (Meta always sends errors[] with failed).
    batch = [
        u if u.status != "failed" or u.error else StatusUpdate("failed", u.ts, E26, u.source) for u in batch
    ]
    expected = run(*batch)
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    dupes = data.draw(st.lists(st.sampled_from(batch), max_size=6))
    for dup in dupes:
        shuffled.insert(data.draw(st.integers(0, len(shuffled))), dup)
    assert run(*shuffled) == expected
