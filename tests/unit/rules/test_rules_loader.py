"""The YAML loader: positions, YAML 1.1 quirks and marketer-readable messages."""

from __future__ import annotations

from datetime import date, time

import pytest

from funnelcast.errors import RuleError
from funnelcast.rules.loader import load_rule_bytes, parse_yaml, resolve_loc
from funnelcast.rules.models import Campaign, Policy, Segment


def problems_of(text: str) -> list[str]:
    with pytest.raises(RuleError) as caught:
        load_rule_bytes(text.encode(), "r.yaml")
    return caught.value.problems


def test_positions_are_recorded_for_keys_and_values() -> None:
    # Given a nested document / When parsed / Then keys and values carry 1-based line:col
    loaded = parse_yaml("a:\n  b: [1, 2]\n", "r.yaml")
    assert loaded.data == {"a": {"b": [1, 2]}}
    assert loaded.key_positions[("a", "b")] == (2, 3)
    assert loaded.value_positions[("a", "b", 1)] == (2, 10)


def test_unquoted_clock_and_dates_follow_yaml_1_1() -> None:
    # Given a policy with an unquoted 09:00 (YAML 1.1 reads 540) and a campaign date
    policy = load_rule_bytes(b"kind: policy\ncompliance: {night_ban: {start: 21:00, end: 08:00}}\n", "p.yaml").rule
    # Then the clock is still understood
    assert isinstance(policy, Policy)
    assert policy.compliance.night_ban is not None
    assert policy.compliance.night_ban.start == time(21, 0)
    assert parse_yaml("start: 2026-12-01\n", "x").data == {"start": date(2026, 12, 1)}


def test_yes_as_key_stays_the_word_written() -> None:
    # Given a YAML 1.1 boolean word used as a key / Then it is reported as the word, not True
    assert any("unknown key 'on'" in p for p in problems_of("kind: policy\non: 1\n"))


def test_pydantic_loc_with_union_tags_maps_to_the_yaml_node() -> None:
    # Given the loc pydantic reports for all -> [0] -> attribute node -> op
    data = {"kind": "segment", "where": {"all": [{"attribute": "a", "op": "x"}]}}
    loc = ("segment", "where", "all", "all", 0, "attribute", "op")
    # Then tags are skipped and real keys kept
    assert resolve_loc(loc, data) == ("where", "all", 0, "op")


def test_not_node_tag_and_alias_are_both_resolved() -> None:
    data = {"kind": "segment", "where": {"not": {"event": "a", "within": "x"}}}
    assert resolve_loc(("segment", "where", "not", "not", "event", "within"), data) == ("where", "not", "within")


def test_unknown_key_suggests_the_closest_field() -> None:
    # Given a typo in a nested event node / Then the message lists the event node's keys
    (problem,) = problems_of("kind: segment\nid: s\nname: n\nwhere: {event: a, within: 7d, cuont: {gte: 1}}\n")
    assert problem.startswith("r.yaml:4:31: unknown key 'cuont' (did you mean 'count'?)")
    assert "not_followed_by" in problem


def test_every_problem_of_a_file_is_reported_in_order() -> None:
    # Given two independent mistakes / Then both are listed, sorted by position
    found = problems_of("kind: segment\nid: BAD\nname: n\nwhere: {event: a, within: 7days}\n")
    assert [p.split(": ")[0] for p in found] == ["r.yaml:2:5", "r.yaml:4:27"]


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("kind: segment\nid: s\nname: 세그먼트\nwhere: {segment: t}\n", Segment),
        ("kind: policy\n", Policy),
        (
            "kind: campaign\nid: c\nname: n\nfunnel_stage: revenue\naudience: {segment: s}\n"
            "schedule: {rate: 1 hour}\npurpose: advertising\nchannels: [sms]\n"
            "variants: [{id: a, weight: 1, messages: {sms: {template: hi}}}]\n",
            Campaign,
        ),
    ],
)
def test_valid_files_load_as_their_model(text: str, model: type) -> None:
    assert isinstance(load_rule_bytes(text.encode(), "ok.yaml").rule, model)


def test_utf8_bom_is_accepted() -> None:
    # Given a file saved by an editor with a BOM / Then it still loads
    assert isinstance(load_rule_bytes("\ufeffkind: policy\n".encode(), "p.yaml").rule, Policy)
