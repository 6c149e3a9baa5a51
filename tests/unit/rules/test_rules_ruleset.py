"""Rule-set checks over the example rule set, the generated schema and round trips."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from funnelcast.commands import schema, validate
from funnelcast.rules.durations import format_duration, format_percent, parse_clock, parse_duration, parse_percent
from funnelcast.rules.loader import load_rule_bytes
from funnelcast.rules.models import Channel, Segment
from funnelcast.rules.ruleset import load_ruleset

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "segment_rules"


def test_example_rule_set_validates(capsys: object) -> None:
    # Given the shipped examples / When validated / Then all segments, >= 5 campaigns and the policy load
    report = load_ruleset([str(EXAMPLES)])
    assert len(report.ruleset.segments) == 10
    stages = {c.funnel_stage.value for c in report.ruleset.campaigns}
    assert stages == {"acquisition", "activation", "retention", "referral", "revenue"}
    assert report.warnings == []
    # And every campaign's schedule got a time zone (the policy default when not written)
    assert all(c.schedule.timezone for c in report.ruleset.campaigns)
    assert validate.run(argparse.Namespace(paths=[str(EXAMPLES)])) == 0


def test_hash_is_stable_across_file_order() -> None:
    # Given the same files listed in two orders / Then the rules hash is the same
    files = sorted(str(p) for p in EXAMPLES.rglob("*.yaml"))
    assert load_ruleset(files).ruleset.rules_hash == load_ruleset(files[::-1]).ruleset.rules_hash


def test_stored_schema_is_current() -> None:
    # Given the committed JSON Schema / Then it equals what the models generate now
    stored = (ROOT / schema.SCHEMA_PATH).read_text(encoding="utf-8")
    assert stored == schema.render_schema(), f"schema is stale: run `{schema.REGENERATE}` from the repo root"
    assert json.loads(stored)["title"] == "funnelcast rule file"


def test_top_share_export_is_allowed_in_templates_of_its_audience() -> None:
    # Given category_picks uses {{ top_category }} with an audience over category_lovers / Then it validates
    report = load_ruleset([str(EXAMPLES)])
    assert "top_category" in report.ruleset.campaign("category_picks").variants[0].messages[Channel.EMAIL].template


@given(st.integers(min_value=1, max_value=99_999), st.sampled_from(["m", "h", "d", "w"]))
def test_duration_round_trip(amount: int, unit: str) -> None:
    value = parse_duration(f"{amount}{unit}")
    assert parse_duration(format_duration(value)) == value


@given(st.integers(min_value=0, max_value=10_000))
def test_percent_round_trip(basis_points: int) -> None:
    assert parse_percent(format_percent(basis_points)) == basis_points


@given(st.integers(min_value=0, max_value=23), st.integers(min_value=0, max_value=59))
def test_clock_text_and_yaml_integer_agree(hour: int, minute: int) -> None:
    # Given a clock written quoted, or unquoted (YAML 1.1 sexagesimal integer) / Then both parse equal
    assert parse_clock(f"{hour:02d}:{minute:02d}") == parse_clock(hour * 60 + minute)


_leaf = st.one_of(
    st.builds(
        lambda event, days, gte: {"event": event, "within": f"{days}d", "count": {"gte": gte}},
        st.sampled_from(["purchase", "product_view", "*"]),
        st.integers(1, 365),
        st.integers(0, 10),
    ),
    st.builds(lambda attr: {"attribute": attr, "op": "exists"}, st.sampled_from(["email", "phone", "vip"])),
    st.builds(lambda r: {"rfm": {"r": r}}, st.lists(st.integers(1, 5), min_size=1, max_size=3)),
    st.builds(lambda seg: {"segment": seg}, st.sampled_from(["a", "b_2"])),
)
_trees = st.recursive(
    _leaf,
    lambda children: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, children),
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(_trees)
def test_random_condition_trees_survive_dump_and_load(tree: dict[str, object]) -> None:
    # Given a random valid condition tree / When dumped as YAML and loaded / Then re-dumping is identical
    text = yaml.safe_dump({"kind": "segment", "id": "s", "name": "n", "where": tree}, allow_unicode=True)
    first = load_rule_bytes(text.encode(), "s.yaml").rule
    assert isinstance(first, Segment)
    again_text = yaml.safe_dump(first.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True))
    again = load_rule_bytes(again_text.encode(), "s.yaml").rule
    assert again == first
