"""Evaluation-side bad input of issue #3: nulls, absent columns, id kinds, duplicates, type mismatches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from funnelcast.errors import DataContractError
from funnelcast.rules.models import RuleSet
from funnelcast.segments.engine import Frames, compute_segments

AT = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def rules(**segments: Any) -> RuleSet:
    return RuleSet.model_validate(
        {
            "policy": {"kind": "policy"},
            "segments": [
                {"kind": "segment", "id": key, "name": key, "where": where} for key, where in segments.items()
            ],
        }
    )


def frames(customers: dict[str, Any], events: list[dict[str, Any]] | None = None, id_dtype: str = "int64") -> Frames:
    customer_frame = pd.DataFrame(customers)
    customer_frame["user_id"] = customer_frame["user_id"].astype(id_dtype)
    event_frame = pd.DataFrame(events or [], columns=["user_id", "ts", "event_type", "amount"])
    event_frame["user_id"] = event_frame["user_id"].astype(id_dtype)
    event_frame["ts"] = pd.to_datetime(event_frame["ts"], utc=True).dt.as_unit("us")
    event_frame["event_type"] = event_frame["event_type"].astype("category")
    event_frame["amount"] = event_frame["amount"].astype("float64")
    return Frames(customers=customer_frame, events=event_frame)


def members(ruleset: RuleSet, data: Frames, segment: str) -> list[Any]:
    result = compute_segments(ruleset, data, AT)
    chosen = result.membership[result.membership["segment_id"] == segment]["user_id"]
    return sorted(chosen.tolist())


def test_null_attribute_fails_every_comparison_but_missing() -> None:
    # Given user 2 has no tier (null) and user 3 a Korean tier name
    data = frames({"user_id": [1, 2, 3], "tier": pd.Series(["gold", None, "골드"], dtype="string[pyarrow]")})
    ruleset = rules(
        ne_gold={"attribute": "tier", "op": "ne", "value": "gold"},
        not_in_gold={"attribute": "tier", "op": "not_in", "value": ["gold"]},
        missing={"attribute": "tier", "op": "missing"},
        exists={"attribute": "tier", "op": "exists"},
        korean={"attribute": "tier", "op": "eq", "value": "골드"},
    )
    # Then null fails ne and not_in (SQL-like), holds only for missing
    assert members(ruleset, data, "ne_gold") == [3]
    assert members(ruleset, data, "not_in_gold") == [3]
    assert members(ruleset, data, "missing") == [2]
    assert members(ruleset, data, "exists") == [1, 3]
    assert members(ruleset, data, "korean") == [3]


def test_absent_attribute_column_is_missing_for_everyone() -> None:
    # Given customers without any 'vip' column
    data = frames({"user_id": [1, 2]})
    ruleset = rules(
        vip={"attribute": "vip", "op": "eq", "value": True},
        not_vip={"attribute": "vip", "op": "ne", "value": True},
        no_vip={"attribute": "vip", "op": "missing"},
    )
    # Then every comparison fails and missing holds for all
    assert members(ruleset, data, "vip") == []
    assert members(ruleset, data, "not_vip") == []
    assert members(ruleset, data, "no_vip") == [1, 2]


def test_absent_event_field_makes_where_fail_not_crash() -> None:
    # Given purchases without a 'coupon' column
    data = frames({"user_id": [1]}, [{"user_id": 1, "ts": "2026-11-30T00:00:00Z", "event_type": "purchase"}])
    ruleset = rules(
        coupon={"event": "purchase", "within": "7d", "where": [{"field": "coupon", "op": "eq", "value": "X"}]},
        none={"event": "purchase", "within": "7d", "where": [{"field": "coupon", "op": "exists"}], "count": {"eq": 0}},
    )
    # Then no event matches a condition on the absent field
    assert members(ruleset, data, "coupon") == []
    assert members(ruleset, data, "none") == [1]


def test_user_id_int_in_customers_and_text_in_events_is_a_clear_error() -> None:
    # Given integer customer ids and text event ids
    data = frames({"user_id": [1, 2]}, [{"user_id": 1, "ts": "2026-11-30T00:00:00Z", "event_type": "purchase"}])
    data = Frames(customers=data.customers, events=data.events.astype({"user_id": "string[pyarrow]"}))
    # When evaluated / Then the error names both dtypes instead of matching nobody silently
    with pytest.raises(DataContractError, match=r"user_id is int64 in customers but string in events"):
        compute_segments(rules(buyers={"event": "purchase", "within": "7d"}), data, AT)


@pytest.mark.parametrize("id_dtype", ["int64", "string[pyarrow]"])
def test_duplicate_customer_ids_are_refused(id_dtype: str) -> None:
    # Given a customers frame that repeats a user_id (the loader keeps the last; the engine guards)
    ids = [1, 1] if id_dtype == "int64" else ["a", "a"]
    events = [{"user_id": ids[0], "ts": "2026-11-30T00:00:00Z", "event_type": "purchase"}]
    for data in (frames({"user_id": ids}, id_dtype=id_dtype), frames({"user_id": ids}, events, id_dtype=id_dtype)):
        # Then evaluation refuses rather than double counting
        with pytest.raises(DataContractError, match="repeats user_id"):
            compute_segments(rules(all_={"attribute": "user_id", "op": "exists"}), data, AT)


def test_events_of_unknown_users_and_after_t_are_ignored_and_sparse_ids_work() -> None:
    # Given sparse integer ids, an event of a non-customer and one after T
    data = frames(
        {"user_id": [10, 10_000_000_000]},
        [
            {"user_id": 10, "ts": "2026-12-01T01:00:01Z", "event_type": "purchase"},  # after T
            {"user_id": 99, "ts": "2026-11-30T00:00:00Z", "event_type": "purchase"},  # not a customer
            {"user_id": 10_000_000_000, "ts": "2026-12-01T01:00:00Z", "event_type": "purchase"},  # exactly T
        ],
    )
    # Then only the customer's event at T counts
    assert members(rules(buyers={"event": "purchase", "within": "1h"}), data, "buyers") == [10_000_000_000]
    # And the non-customer's event is counted, not silently lost
    assert compute_segments(rules(buyers={"event": "purchase", "within": "1h"}), data, AT).unknown_user_events == 1


def test_no_events_at_all() -> None:
    # Given customers and an empty events frame
    data = frames({"user_id": [1, 2]})
    result = compute_segments(
        rules(dormant={"not": {"event": "*", "within": "30d"}}, champs={"rfm": {"code": ["555"]}}), data, AT
    )
    # Then everyone is dormant, nobody has RFM scores
    assert result.counts == {"dormant": 2, "champs": 0}
    assert result.features["rfm_r"].isna().all()


def test_type_mismatches_name_the_attribute() -> None:
    # Given a text tier compared with a number, and 'within' on a text column
    data = frames({"user_id": [1], "tier": pd.Series(["gold"], dtype="category")})
    with pytest.raises(DataContractError, match="attribute 'tier'"):
        compute_segments(rules(bad={"attribute": "tier", "op": "gt", "value": 3}), data, AT)
    with pytest.raises(DataContractError, match=r"attribute 'tier'.*timestamp"):
        compute_segments(rules(bad={"attribute": "tier", "op": "within", "value": "7d"}), data, AT)


def test_timestamp_attribute_compares_with_dates_and_zoned_values() -> None:
    # Given signups as UTC timestamps
    signup = pd.to_datetime(["2026-11-30T15:00:00Z", "2026-11-29T00:00:00Z", None], utc=True).as_unit("us")
    data = frames({"user_id": [1, 2, 3], "signup_at": signup})
    ruleset = rules(
        # 2026-12-01 00:00 in Seoul is 2026-11-30 15:00 UTC: user 1 signed up at or after it
        since_kst={"attribute": "signup_at", "op": "gte", "value": "2026-12-01T00:00:00+09:00"},
        # a naive value is UTC
        before_day={"attribute": "signup_at", "op": "lt", "value": "2026-11-30T00:00:00"},
        recent={"attribute": "signup_at", "op": "within", "value": "1d"},
    )
    assert members(ruleset, data, "since_kst") == [1]
    assert members(ruleset, data, "before_day") == [2]
    assert members(ruleset, data, "recent") == [1]
