"""Each example segment's hand-checked fixture, written as CSV and as Parquet files, loaded by the
loader and evaluated by the engine, gives exactly the expected members: the loader's frames are
what the engine consumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from funnelcast.data.load import load_dataset
from funnelcast.rules.ruleset import load_ruleset
from funnelcast.segments.engine import compute_segments
from funnelcast.segments.plan import data_needs
from funnelcast.storage import LocalStore

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = sorted((ROOT / "segment_rules" / "fixtures").glob("*.json"))


@pytest.fixture(scope="module")
def example_rules() -> Any:
    return load_ruleset([str(ROOT / "segment_rules")]).ruleset


def _write(root: Path, case: dict[str, Any], fmt: str) -> None:
    customers = pd.DataFrame(case["customers"])
    events = pd.DataFrame(case["events"])
    for name, frame in (("customers", customers), ("events", events)):
        (root / name).mkdir(parents=True)
        if fmt == "csv":
            # Excel-style CSV: UTF-8 with a byte-order mark; booleans as text.
            frame.to_csv(root / name / "part-0.csv", index=False, encoding="utf-8-sig")
        else:
            if "is_promo" in frame.columns:
                frame["is_promo"] = frame["is_promo"].astype("boolean")
            frame.to_parquet(root / name / "part-0.parquet", index=False)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_fixture_members_through_the_loader(path: Path, fmt: str, tmp_path: Path, example_rules: Any) -> None:
    # Given a fixture written as files in the data contract
    case = json.loads(path.read_text(encoding="utf-8"))
    _write(tmp_path, case, fmt)
    at = pd.Timestamp(case["at"]).to_pydatetime()
    # When the loader reads what the rule set needs and the engine evaluates it
    dataset = load_dataset(LocalStore(tmp_path), data_needs(example_rules, at), run_id="fixture")
    result = compute_segments(example_rules, dataset, at)
    # Then nothing was quarantined and exactly the expected users are members
    assert dataset.quarantined == {}
    members = result.membership[result.membership["segment_id"] == case["segment"]]["user_id"]
    assert sorted(members.astype(str)) == sorted(case["expected_members"]), case.get("note")
