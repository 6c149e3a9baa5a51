"""The pending-send ledger: counted once, dropped once reserved or a day after its planned time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd

from funnelcast.caps.policy import UserCapState
from funnelcast.planning.pending import COLUMNS, updated_pending, with_pending

DAY = date(2026, 12, 1)
AT = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def ledger(*rows: tuple[str, str, int, datetime]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {
                "run_id": run,
                "send_id": send,
                "user_id": str(user),
                "campaign_id": "promo",
                "channel": "sms",
                "topic": "cart",
                "local_day": when.date().isoformat(),
                "not_before": when,
            }
            for run, send, user, when in rows
        ],
        columns=COLUMNS,
    )
    frame["not_before"] = pd.to_datetime(frame["not_before"], utc=True)
    return frame


def reserved(user: int, send_id: str) -> UserCapState:
    return UserCapState.empty(user).with_send(
        send_id=send_id, channel="sms", topic="cart", campaign_id="promo", local_day=DAY, sent_at=AT
    )


def test_a_pending_send_the_cap_table_already_holds_is_counted_once() -> None:
    # Given user 1's send s1 both reserved (cap table) and still in the ledger, and user 2's s2 only pending
    stored = {1: reserved(1, "s1")}
    pending = ledger(("promo@a", "s1", 1, AT), ("promo@a", "s2", 2, AT))
    # When the planner merges them
    merged = with_pending(stored, pending, users=[1, 2], runs=[])
    # Then each send counts once in its day, and the int user ids come back as ints
    week = "2026-W49"
    assert merged[1].weeks[week].count("n_d2") == 1
    assert merged[2].weeks[week].count("n_d2") == 1
    assert merged[2].last_sent("promo") == int(AT.timestamp())


def test_entries_of_the_runs_being_planned_and_of_other_users_are_ignored() -> None:
    pending = ledger(("promo@now", "s1", 1, AT), ("promo@a", "s3", 3, AT))
    assert with_pending({}, pending, users=[1, 2], runs=["promo@now"]) == {}


def test_reserved_and_expired_entries_leave_the_ledger() -> None:
    # Given a reserved entry, one planned more than a day ago, and one still waiting
    pending = ledger(
        ("promo@a", "s1", 1, AT),
        ("promo@old", "s2", 2, AT - timedelta(days=1, minutes=1)),
        ("promo@a", "s3", 3, AT + timedelta(hours=6)),
    )
    # When the ledger is updated after a slot that handed nothing over
    kept = updated_pending(pending, [], {1: reserved(1, "s1")}, now=AT)
    # Then only the waiting one is kept
    assert kept["send_id"].tolist() == ["s3"]
