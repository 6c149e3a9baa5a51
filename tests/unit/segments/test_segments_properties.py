"""The vectorised engine agrees with the naive reference evaluator on random data and rule trees."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segments_reference import Reference

from funnelcast.rules.models import EventNode, RuleSet, walk
from funnelcast.segments import engine
from funnelcast.segments.engine import Frames, compute_segments
from funnelcast.segments.plan import evaluation_order

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOWS = ["1h", "2h", "6h", "24h"]
TYPES = ["view", "cart", "purchase"]
# Offsets in hours before T: 1, 2, 6 and 24 land exactly on window edges (outside), -1 is after T.
OFFSETS = st.sampled_from([-1, 0, 1, 2, 3, 6, 7, 24, 25, 30])

field_conditions = st.one_of(
    st.builds(lambda v: {"field": "cat", "op": "eq", "value": v}, st.sampled_from(["a", "b"])),
    st.builds(lambda v: {"field": "cat", "op": "ne", "value": v}, st.sampled_from(["a", "b"])),
    st.just({"field": "cat", "op": "missing"}),
    st.builds(lambda v: {"field": "amount", "op": "gte", "value": v}, st.integers(0, 3)),
    st.just({"field": "promo", "op": "eq", "value": True}),
)
count_bounds = st.one_of(
    st.none(),
    st.builds(lambda op, n: {op: n}, st.sampled_from(["eq", "gte", "lte", "gt", "lt", "ne"]), st.integers(0, 3)),
)
share_values = st.sampled_from([0, 0.25, 0.5, 2 / 3, 0.7, 1])
share_ops = st.sampled_from(["gte", "gt", "lte", "eq"])


@st.composite
def event_nodes(draw: st.DrawFn) -> dict[str, Any]:
    node: dict[str, Any] = {
        "event": draw(st.sampled_from([*TYPES, "*"])),
        "within": draw(st.sampled_from(WINDOWS)),
    }
    if draw(st.booleans()):
        node["where"] = draw(st.lists(field_conditions, min_size=1, max_size=2))
    count = draw(count_bounds)
    if count is not None:
        node["count"] = count
    extra = draw(st.sampled_from(["none", "per", "sum", "share", "top_share", "nfb"]))
    if extra == "per":
        node["per"] = "cat"
    elif extra == "sum":
        node["sum"] = "amount"
        node["value"] = {draw(st.sampled_from(["gte", "lt", "eq"])): draw(st.integers(0, 6))}
    elif extra == "share":
        node["share"] = {"where": [draw(field_conditions)], draw(share_ops): draw(share_values)}
    elif extra == "top_share":
        node["top_share"] = {"field": "cat", draw(share_ops): draw(share_values)}
    elif extra == "nfb":
        within = node["within"]
        shorter = [w for w in WINDOWS if int(w[:-1]) < int(within[:-1])]
        if shorter:
            node["not_followed_by"] = {"event": draw(st.sampled_from(TYPES)), "after": draw(st.sampled_from(shorter))}
    return node


attribute_nodes = st.one_of(
    st.builds(
        lambda op, v: {"attribute": "age", "op": op, "value": v},
        st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
        st.integers(18, 22),
    ),
    st.builds(lambda v: {"attribute": "age", "op": "between", "value": [v, v + 1]}, st.integers(18, 22)),
    st.builds(
        lambda op, v: {"attribute": "tier", "op": op, "value": v},
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from(["gold", "silver"]), min_size=1, max_size=2),
    ),
    st.builds(lambda op: {"attribute": "tier", "op": op}, st.sampled_from(["exists", "missing"])),
    st.builds(
        lambda op, v: {"attribute": "signup_at", "op": op, "value": v},
        st.sampled_from(["within", "before"]),
        st.sampled_from(WINDOWS),
    ),
    st.just({"attribute": "nowhere", "op": "ne", "value": 1}),
)
rfm_nodes = st.one_of(
    st.builds(lambda r: {"rfm": {"r": r}}, st.lists(st.integers(1, 5), min_size=1, max_size=3)),
    st.builds(
        lambda f, m: {"rfm": {"f": f, "m": m}},
        st.lists(st.integers(1, 5), min_size=1),
        st.lists(st.integers(1, 5), min_size=1),
    ),
    st.builds(lambda c: {"rfm": {"code": [c]}}, st.sampled_from(["111", "555", "313", "151"])),
)
leaves = st.one_of(event_nodes(), attribute_nodes, rfm_nodes)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, children),
    ),
    max_leaves=4,
)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    n = draw(st.integers(1, 6))
    # user_id is an integer or a string (SPEC §1: compared as given); the same kind in both frames
    as_text = draw(st.booleans())

    def uid(number: int) -> Any:
        return f"u{number:02d}" if as_text else number

    customers = [
        {
            "user_id": uid(user),
            "age": draw(st.one_of(st.none(), st.integers(18, 22))),
            "tier": draw(st.sampled_from([None, "gold", "silver", "bronze"])),
            "signup_at": draw(st.one_of(st.none(), OFFSETS.map(lambda h: AT - timedelta(hours=h)))),
        }
        for user in range(n)
    ]
    events = [
        {
            "user_id": uid(draw(st.integers(0, n))),  # user n is not a customer: ignored
            "ts": AT - timedelta(hours=draw(OFFSETS)),
            "event_type": draw(st.sampled_from(TYPES)),
            "cat": draw(st.sampled_from([None, "a", "b", "c"])),
            "amount": float(draw(st.integers(0, 3))) if draw(st.booleans()) else None,
            "promo": draw(st.sampled_from([None, True, False])),
        }
        for _ in range(draw(st.integers(0, 25)))
    ]
    return customers, events


def _frames(customers: list[dict[str, Any]], events: list[dict[str, Any]]) -> Frames:
    """Frames with the loader's dtypes (data contract): ids int64 or string[pyarrow], categoricals."""
    id_dtype = "string[pyarrow]" if isinstance(customers[0]["user_id"], str) else "int64"
    customer_frame = pd.DataFrame(customers)
    customer_frame["user_id"] = customer_frame["user_id"].astype(id_dtype)
    customer_frame["age"] = customer_frame["age"].astype("Int64")
    customer_frame["tier"] = customer_frame["tier"].astype("string[pyarrow]")
    customer_frame["signup_at"] = pd.to_datetime(customer_frame["signup_at"], utc=True).dt.as_unit("us")
    columns = ["user_id", "ts", "event_type", "cat", "amount", "promo"]
    event_frame = pd.DataFrame(events, columns=columns)
    event_frame["user_id"] = event_frame["user_id"].astype(id_dtype)
    event_frame["ts"] = pd.to_datetime(event_frame["ts"], utc=True).dt.as_unit("us")
    event_frame["event_type"] = event_frame["event_type"].astype("category")
    event_frame["cat"] = event_frame["cat"].astype("category")
    event_frame["amount"] = event_frame["amount"].astype("float64")
    event_frame["promo"] = event_frame["promo"].astype("boolean")
    return Frames(customers=customer_frame, events=event_frame)


def _members(result: Any, segment_id: str) -> set[Any]:
    membership = result.membership
    return set(membership[membership["segment_id"] == segment_id]["user_id"].tolist())


def _expected_top_exports(ruleset: RuleSet, reference: Reference) -> dict[str, dict[Any, Any]]:
    """``top_<field>`` per user: the first top_share node in evaluation order with a value wins."""
    exports: dict[str, dict[Any, Any]] = {}
    for planned in evaluation_order(ruleset):
        for node in walk(planned.where):
            if isinstance(node, EventNode) and node.top_share is not None:
                values = exports.setdefault(f"top_{node.top_share.field}", {})
                for customer in reference.customers:
                    user = customer["user_id"]
                    if values.get(user) is None:
                        values[user] = reference.top_value(node, user)
    return exports


EXAMPLES = int(os.environ.get("SEGMENTS_PROPERTY_EXAMPLES", "90"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), first=trees, second=trees, audience=trees, exclude=trees)
def test_engine_matches_reference(
    world: tuple[list[dict[str, Any]], list[dict[str, Any]]], first: Any, second: Any, audience: Any, exclude: Any
) -> None:
    check_against_reference(world, first, second, audience, exclude)


@settings(max_examples=max(EXAMPLES // 3, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), first=trees, second=trees, audience=trees, exclude=trees)
def test_engine_matches_reference_with_sparse_value_tallies(
    world: tuple[list[dict[str, Any]], list[dict[str, Any]]], first: Any, second: Any, audience: Any, exclude: Any
) -> None:
    # Given the engine forced onto its sparse (sorted pairs) per/top_share path, used for
    # high-cardinality fields such as product_id at scale; Then it agrees with the reference too
    with patch.object(engine, "DENSE_PAIR_LIMIT", 0):
        check_against_reference(world, first, second, audience, exclude)


def check_against_reference(
    world: tuple[list[dict[str, Any]], list[dict[str, Any]]], first: Any, second: Any, audience: Any, exclude: Any
) -> None:
    # Given random customers/events (timestamps on window edges, int or text ids), two random
    # segments, the second referencing the first, and a campaign whose audience and exclude are
    # random trees over segments, attributes and events
    customers, events = world
    ruleset = RuleSet.model_validate(
        {
            "policy": {"kind": "policy", "rfm": {"lookback": "24h"}},
            "segments": [
                {"kind": "segment", "id": "first", "name": "first", "where": first},
                {"kind": "segment", "id": "second", "name": "second", "where": {"all": [second, {"segment": "first"}]}},
            ],
            "campaigns": [
                {
                    "kind": "campaign",
                    "id": "promo",
                    "name": "promo",
                    "funnel_stage": "revenue",
                    "audience": {"any": [audience, {"segment": "second"}]},
                    "exclude": [exclude, {"segment": "first"}],
                    "schedule": {"rate": "1 hour"},
                    "purpose": "informational",
                    "priority": 50,
                    "channels": ["email"],
                    "variants": [{"id": "a", "weight": 1, "messages": {"email": {"template": "hi", "subject": "s"}}}],
                }
            ],
        }
    )
    # When the engine evaluates them
    result = compute_segments(ruleset, _frames(customers, events), AT)
    reference = Reference(ruleset, customers, events, AT)
    # Then membership equals the reference evaluator's, segment by segment, pseudo-segments included
    for planned in evaluation_order(ruleset):
        expected = reference.segment(planned.segment_id, planned.where)
        assert _members(result, planned.segment_id) == expected, (planned.segment_id, planned.where)
        assert result.counts[planned.segment_id] == len(expected)
    assert set(result.counts) == {"first", "second", "@audience:promo", "@exclude:promo"}
    # And the exported RFM scores and top_<field> values equal the reference's
    features = result.features.set_index("user_id")
    assert len(features) == len(customers)
    for user, row in features.iterrows():
        scores = reference.rfm.get(user)
        got_scores = None if pd.isna(row["rfm_r"]) else (int(row["rfm_r"]), int(row["rfm_f"]), int(row["rfm_m"]))
        assert got_scores == scores
        if scores is not None:
            assert row["rfm_code"] == "".join(map(str, scores))
    for name, values in _expected_top_exports(ruleset, reference).items():
        got = {user: (None if pd.isna(value) else value) for user, value in features[name].items()}
        assert got == values, name
