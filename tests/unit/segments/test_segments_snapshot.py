"""Snapshots: files under segments/<T>/<hash>/, latest.json moved last, entered/exited counted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnelcast.errors import SnapshotMissingError
from funnelcast.rules.models import RuleSet
from funnelcast.segments.engine import Frames
from funnelcast.segments.service import recompute
from funnelcast.segments.snapshot import (
    LATEST_KEY,
    LatestSnapshotReader,
    entered_exited,
    load_latest_snapshot,
    snapshot_prefix,
)
from funnelcast.storage import LocalStore

AT = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


@pytest.fixture
def ruleset() -> RuleSet:
    return RuleSet.model_validate(
        {
            "policy": {"kind": "policy"},
            "segments": [
                {
                    "kind": "segment",
                    "id": "buyers",
                    "name": "buyers",
                    "where": {"event": "purchase", "within": "7d"},
                }
            ],
        }
    )


def _frames(buyers: list[int]) -> Frames:
    customers = pd.DataFrame({"user_id": pd.Series([1, 2, 3], dtype="int64")})
    events = pd.DataFrame(
        {
            "user_id": pd.Series(buyers, dtype="int64"),
            "ts": pd.Series([pd.Timestamp("2026-11-30T00:00Z")] * len(buyers)).dt.as_unit("us"),
            "event_type": pd.Categorical(["purchase"] * len(buyers)),
            "amount": [1000.0] * len(buyers),
        }
    )
    return Frames(customers=customers, events=events)


def test_no_snapshot_raises(tmp_path: Path) -> None:
    # Given an empty bucket, When the planner asks for the latest snapshot, Then it is told clearly.
    with pytest.raises(SnapshotMissingError, match=r"latest\.json"):
        load_latest_snapshot(LocalStore(tmp_path))


def test_second_run_counts_entered_and_exited(tmp_path: Path, ruleset: RuleSet) -> None:
    store = LocalStore(tmp_path)
    # Given a first run where users 1 and 2 bought
    recompute(ruleset, store, store, AT, "run-1", dataset=_frames([1, 2]))
    # When a later run sees users 2 and 3
    later = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    outcome = recompute(ruleset, store, store, later, "run-2", dataset=_frames([2, 3]))
    # Then one entered and one exited, and latest points at the second snapshot
    assert outcome.manifest["changes"]["buyers"] == {"entered": 1, "exited": 1}
    snapshot = load_latest_snapshot(store)
    assert snapshot.prefix == snapshot_prefix(later, ruleset.rules_hash)
    assert snapshot.at == later
    assert sorted(snapshot.membership["user_id"]) == [2, 3]
    assert list(snapshot.features.columns[:1]) == ["user_id"]
    assert {"rfm_r", "rfm_f", "rfm_m", "rfm_code"} <= set(snapshot.features.columns)


def test_warm_reader_reads_only_the_pointer_until_it_moves(counting_store: Any, ruleset: RuleSet) -> None:
    store = counting_store
    recompute(ruleset, store, store, AT, "run-1", dataset=_frames([1, 2]))
    reader = LatestSnapshotReader()
    first = reader(store)
    # Given a warm reader that loaded the snapshot once
    store.reads.clear()
    # When the planner fires again before the next recompute
    again = reader(store)
    # Then only latest.json was read and the same snapshot came back
    assert store.reads == [LATEST_KEY]
    assert again is first
    # And once a recompute moved the pointer, the new snapshot is loaded
    later = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    recompute(ruleset, store, store, later, "run-2", dataset=_frames([3]))
    moved = reader(store)
    assert moved.prefix == snapshot_prefix(later, ruleset.rules_hash)
    assert sorted(moved.membership["user_id"]) == [3]


def test_crash_before_pointer_move_keeps_old_pointer(
    tmp_path: Path, ruleset: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    recompute(ruleset, store, store, AT, "run-1", dataset=_frames([1]))
    before = store.get_bytes(LATEST_KEY)

    # Given the pointer move fails (the Lambda dies after writing the files)
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr("funnelcast.segments.snapshot.move_latest", crash)
    # When a second run crashes
    with pytest.raises(RuntimeError):
        recompute(ruleset, store, store, datetime(2026, 12, 1, 3, tzinfo=UTC), "run-2", dataset=_frames([3]))
    # Then readers still see the first snapshot
    assert store.get_bytes(LATEST_KEY) == before
    assert sorted(load_latest_snapshot(store).membership["user_id"]) == [1]


@settings(max_examples=60, deadline=None)
@given(
    now=st.sets(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 6)), max_size=15),
    before=st.one_of(st.none(), st.sets(st.tuples(st.sampled_from(["b", "c", "d"]), st.integers(0, 6)), max_size=15)),
    as_text=st.booleans(),
)
def test_entered_exited_matches_set_differences(
    now: set[tuple[str, int]], before: set[tuple[str, int]] | None, as_text: bool
) -> None:
    # Given two random memberships (segment 'a' only now, 'd' only before; int or text ids)
    def frame(pairs: set[tuple[str, int]], categories: list[str]) -> pd.DataFrame:
        ordered = sorted(pairs)
        ids = [f"u{user}" if as_text else user for _, user in ordered]
        return pd.DataFrame(
            {
                "user_id": pd.Series(ids, dtype="string[pyarrow]" if as_text else "int64"),
                "segment_id": pd.Categorical([segment for segment, _ in ordered], categories=categories),
            }
        )

    current = frame(now, ["a", "b", "c"])
    previous = None if before is None else frame(before, ["b", "c", "d"])
    # When changes are counted
    changes = entered_exited(current, previous)
    # Then they equal the set differences per segment, for every segment of either side
    old = before or set()
    for segment in ["a", "b", "c", *([] if before is None else ["d"])]:
        mine = {user for s, user in now if s == segment}
        theirs = {user for s, user in old if s == segment}
        assert changes[segment] == {"entered": len(mine - theirs), "exited": len(theirs - mine)}
