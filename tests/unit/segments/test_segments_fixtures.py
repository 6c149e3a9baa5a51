"""Every example segment evaluated on its hand-checked fixture gives exactly the expected members."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from funnelcast.rules.ruleset import load_ruleset
from funnelcast.segments.engine import Frames, compute_segments

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "segments").glob("*.json"))


def _frames(case: dict[str, Any]) -> Frames:
    customers = pd.DataFrame(case["customers"])
    customers["user_id"] = customers["user_id"].astype("string[pyarrow]")
    if "signup_at" in customers.columns:
        customers["signup_at"] = pd.to_datetime(customers["signup_at"], utc=True).dt.as_unit("us")
    events = pd.DataFrame(case["events"])
    events["user_id"] = events["user_id"].astype("string[pyarrow]")
    events["ts"] = pd.to_datetime(events["ts"], utc=True).dt.as_unit("us")
    events["event_type"] = events["event_type"].astype("category")
    if "amount" in events.columns:
        events["amount"] = events["amount"].astype("float64")
    if "is_promo" in events.columns:
        events["is_promo"] = events["is_promo"].astype("boolean")
    return Frames(customers=customers, events=events)


@pytest.fixture(scope="module")
def example_rules() -> Any:
    return load_ruleset([str(ROOT / "segment_rules")]).ruleset


def test_every_example_segment_has_a_fixture(example_rules: Any) -> None:
    # Given the example rule set, Then each of its segments has a fixture of the same id.
    assert {s.id for s in example_rules.segments} <= {path.stem for path in FIXTURES}


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_segment_fixture_members(path: Path, example_rules: Any) -> None:
    # Given a fixture with users just inside and outside each boundary
    case = json.loads(path.read_text(encoding="utf-8"))
    at = pd.Timestamp(case["at"]).to_pydatetime()
    # When the real rule set is evaluated at the fixture's T
    result = compute_segments(example_rules, _frames(case), at)
    members = result.membership[result.membership["segment_id"] == case["segment"]]["user_id"]
    # Then exactly the expected users are members
    assert sorted(members.astype(str)) == sorted(case["expected_members"]), case.get("note")
