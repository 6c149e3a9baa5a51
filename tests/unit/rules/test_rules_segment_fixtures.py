"""The per-segment fixtures in segment_rules/fixtures/ stay consistent with the example rule set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from funnelcast.rules.ruleset import load_ruleset

EXAMPLES = Path(__file__).resolve().parents[3] / "segment_rules"
FIXTURES = sorted((EXAMPLES / "fixtures").glob("*.json"))
EVENT_TYPES = {"page_view", "product_view", "add_to_cart", "purchase", "review", "app_open", "signup"}


def test_every_example_segment_has_a_fixture() -> None:
    # Given the example segments / Then each has exactly one fixture named after it
    segment_ids = {segment.id for segment in load_ruleset([str(EXAMPLES)]).ruleset.segments}
    assert {path.stem for path in FIXTURES} == segment_ids


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_is_well_formed(path: Path) -> None:
    # Given one fixture / Then its members are known customers, and every event uses the shared vocabulary
    fixture: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert fixture["segment"] == path.stem
    customers = {row["user_id"] for row in fixture["customers"]}
    assert set(fixture["expected_members"]) <= customers
    assert set(fixture["expected_members"]) != customers, "a fixture needs at least one non-member"
    for event in fixture["events"]:
        assert event["user_id"] in customers
        assert event["event_type"] in EVENT_TYPES
        assert event["ts"] <= fixture["at"], "events after T are ignored; keep fixtures unambiguous"
