"""The synthetic data generator: contract columns and dtypes, determinism, realistic behaviour."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from funnelcast.data.generate import generate, write_dataset
from funnelcast.data.load import load_dataset, needs_everything
from funnelcast.rules.ruleset import load_ruleset
from funnelcast.segments.engine import Frames, compute_segments
from funnelcast.storage import LocalStore

ROOT = Path(__file__).resolve().parents[3]
END = datetime(2026, 12, 1, tzinfo=UTC)
CONTACT_COLUMNS = {
    "signup_at", "timezone", "email", "phone", "push_endpoint", "kakao_friend", "consent_email", "consent_sms",
    "consent_push", "consent_kakao", "consent_night_ads", "name", "region", "product_name",
}  # fmt: skip


@pytest.fixture(scope="module")
def demo_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    # The demo's size: 5,000 customers over 30 days.
    return generate(5_000, 120_000, seed=3, end=END, days=30)


def _digest(root: Path) -> str:
    hasher = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            hasher.update(path.relative_to(root).as_posix().encode())
            hasher.update(path.read_bytes())
    return hasher.hexdigest()


def test_frames_follow_the_data_contract(demo_data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    # Given generated data, Then every contract column is there with the contract's dtype
    customers, events = demo_data
    assert set(customers.columns) >= CONTACT_COLUMNS
    assert customers["user_id"].dtype == "int64"
    assert customers["user_id"].is_unique
    assert str(customers["signup_at"].dtype) == "datetime64[us, UTC]"
    assert customers["consent_sms"].dtype == "boolean"
    assert len(events) == 120_000
    assert events["user_id"].dtype == "int64"
    assert str(events["ts"].dtype) == "datetime64[us, UTC]"
    assert isinstance(events["event_type"].dtype, pd.CategoricalDtype)
    assert events["amount"].dtype == "float64"
    assert events["is_promo"].dtype == "boolean"
    assert {"product_id", "product_name", "category"} <= set(events.columns)
    # And events stay inside (end - days, end] and belong to known customers
    assert events["ts"].max() <= pd.Timestamp(END)
    assert events["ts"].min() > pd.Timestamp(END - timedelta(days=30))
    assert events["user_id"].isin(customers["user_id"]).all()
    # And sign-ups never lie in the future
    assert customers["signup_at"].max() <= pd.Timestamp(END)


def test_behaviour_is_realistic(demo_data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    customers, events = demo_data
    per_user = events.groupby("user_id").size().sort_values(ascending=False)
    # Heavy tail: the most active 10% of customers produce well over a third of the events
    assert per_user.head(len(customers) // 10).sum() > 0.35 * len(events)
    # Churned customers exist: no event at all in the window
    assert (~customers["user_id"].isin(events["user_id"])).mean() > 0.1
    # Purchases carry amounts in KRW and promo flags; only purchases do
    purchases = events[events["event_type"] == "purchase"]
    assert purchases["amount"].gt(0).all()
    assert events.loc[events["event_type"] != "purchase", "amount"].isna().all()
    assert 0.1 < purchases["is_promo"].mean() < 0.6
    # Carts are abandoned more often than not
    assert (events["event_type"] == "add_to_cart").sum() > (events["event_type"] == "purchase").sum()
    # Mostly Seoul, some other zones, some missing or invalid ones
    zones = customers["timezone"].value_counts(dropna=False, normalize=True)
    assert zones["Asia/Seoul"] > 0.8
    assert {"America/Los_Angeles", "Asia/Tokyo", "Europe/Berlin", "Seoul/Gangnam"} <= set(zones.index.dropna())
    assert customers["timezone"].isna().any()
    # Korean regions and E.164 Korean mobile numbers; night-ad consent is rare
    assert customers["region"].isin(["서울", "경기", "부산"]).mean() > 0.4
    assert customers["phone"].dropna().str.fullmatch(r"\+8210\d{8}").all()
    assert customers["push_endpoint"].dropna().str.startswith("arn:aws:sns:").all()
    assert customers["consent_night_ads"].mean() < 0.1


@pytest.mark.parametrize("seed", [3, 4])
def test_every_example_segment_and_audience_is_non_empty_on_demo_data(seed: int) -> None:
    # Given the example rule set and data the way the demo makes it: 5,000 customers, 30 days of
    # history and 7 days still to come, evaluated at the end of the history (sign-ups up to then)
    ruleset = load_ruleset([str(ROOT / "segment_rules")]).ruleset
    customers, events = generate(5_000, int(5_000 * 1.2 * 37), seed=seed, end=END, days=37)
    at = END - timedelta(days=7)
    history = events[events["ts"] <= pd.Timestamp(at)].reset_index(drop=True)
    joined = customers[customers["signup_at"] <= pd.Timestamp(at)].reset_index(drop=True)
    # When it is evaluated there
    result = compute_segments(ruleset, Frames(joined, history), at)
    # Then every segment and every campaign audience has members
    empty = [name for name, count in result.counts.items() if count == 0 and not name.startswith("@exclude")]
    assert not empty
    # And retention still has customers at risk who are not dormant (the campaign excludes dormant)
    members = result.membership
    at_risk = set(members.loc[members["segment_id"] == "at_risk", "user_id"])
    dormant = set(members.loc[members["segment_id"] == "dormant", "user_id"])
    assert at_risk - dormant


def test_every_example_segment_is_non_empty_on_a_30_day_dataset(demo_data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ruleset = load_ruleset([str(ROOT / "segment_rules")]).ruleset
    counts = compute_segments(ruleset, Frames(*demo_data), END).counts
    assert all(counts[segment.id] > 0 for segment in ruleset.segments), counts


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    # Given two runs with the same seed and one with another seed
    digests = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        customers, events = generate(300, 4_000, seed=seed, end=END, days=10)
        write_dataset(LocalStore(tmp_path / name), customers, events, "parquet")
        digests.append(_digest(tmp_path / name))
    # Then the same seed writes identical bytes and another seed does not
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_written_dataset_loads_back_unchanged(tmp_path: Path, fmt: str) -> None:
    # Given a generated dataset written as hive partitions
    customers, events = generate(200, 3_000, seed=5, end=END, days=5)
    keys = write_dataset(LocalStore(tmp_path), customers, events, fmt)  # type: ignore[arg-type]
    assert keys[0] == f"customers/part-0.{fmt}"
    assert all(key.startswith("events/dt=2026-1") for key in keys[1:])
    # When it is loaded back with every column
    dataset = load_dataset(LocalStore(tmp_path), needs_everything(END), run_id="r")
    # Then nothing is quarantined and the frames hold the same values
    assert dataset.quarantined == {}
    assert len(dataset.customers) == 200
    assert len(dataset.events) == 3_000
    loaded = dataset.events.sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True)
    original = events.sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True)
    assert loaded["ts"].equals(original["ts"])
    assert loaded["user_id"].equals(original["user_id"])
    assert (loaded["event_type"].astype(str) == original["event_type"].astype(str)).all()
    pd.testing.assert_series_equal(loaded["amount"], original["amount"])
    assert loaded["is_promo"].astype("boolean").equals(original["is_promo"])
