"""Property: the loader never loses a row silently. Every event row read is either loaded or
quarantined with a reason, and exactly the rows that break the contract are quarantined."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funnelcast.data.load import load_dataset, needs_everything
from funnelcast.storage import LocalStore

T = datetime(2026, 11, 23, 12, tzinfo=UTC)
GOOD_TS = ["2026-11-20T10:00:00Z", "2026-11-21T19:00:00+09:00", "2026-11-22 08:30:00", "2026-11-23T12:00:00Z"]
BAD_TS = ["", "not a date", "2026-13-45T99:00:00Z"]
GOOD_AMOUNTS = ["", "0", "12000", "99.5"]
BAD_AMOUNTS = ["-1", "abc", "1,000원"]

rows = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(["1", "2", "3", ""]),
            "ts": st.sampled_from(GOOD_TS + BAD_TS),
            "event_type": st.sampled_from(["purchase", "app_open", "리뷰", ""]),
            "amount": st.sampled_from(GOOD_AMOUNTS + BAD_AMOUNTS),
        }
    ),
    max_size=25,
)


def _breaks_contract(row: dict[str, str]) -> bool:
    return row["user_id"] == "" or row["ts"] in BAD_TS or row["event_type"] == "" or row["amount"] in BAD_AMOUNTS


def _csv_field(value: str) -> str:
    return f'"{value}"' if "," in value else value


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows)
def test_every_row_is_loaded_or_quarantined(rows: list[dict[str, str]]) -> None:
    with TemporaryDirectory() as folder:
        # Given a CSV of random good and broken rows
        store = LocalStore(Path(folder))
        store.put_bytes("customers/c.csv", b"user_id\n1\n2\n3\n")
        lines = ["user_id,ts,event_type,amount"]
        lines += [",".join(_csv_field(row[name]) for name in ("user_id", "ts", "event_type", "amount")) for row in rows]
        store.put_bytes("events/e.csv", ("\n".join(lines) + "\n").encode())
        needs = needs_everything(T, T - timedelta(days=30))
        # When it is loaded
        dataset = load_dataset(store, needs, run_id="p")
        # Then loaded + quarantined = read, and exactly the broken rows are quarantined
        broken = sum(_breaks_contract(row) for row in rows)
        assert sum(dataset.quarantined.values()) == broken
        assert len(dataset.events) == len(rows) - broken
        if broken:
            quarantine = pd.read_parquet(Path(folder) / "_quarantine" / "p" / "events.parquet")
            assert len(quarantine) == broken
            assert quarantine["reason"].notna().all()
        # And every loaded row is inside (T - 30d, T] in UTC microseconds
        assert (dataset.events["ts"] <= pd.Timestamp(T)).all()
        assert str(dataset.events["ts"].dtype) == "datetime64[us, UTC]"
