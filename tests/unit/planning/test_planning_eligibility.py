"""Eligibility: exclude, holdout, variants, channel waterfall, suppression, time zones, windows (SPEC §2.4, §3)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from planning_builders import T, audience_of, make_campaign, make_features, make_policy

from funnelcast.errors import DataContractError
from funnelcast.ids import in_holdout, pick_variant, send_id
from funnelcast.planning.eligibility import PENDING, Evaluation, PlanContext, evaluate_audience, template_variables
from funnelcast.rules.models import Campaign, Policy, TimeWindow

RUN = "promo_a@20261201T0100Z"


def evaluate(
    campaign: Campaign,
    features: pd.DataFrame,
    *,
    excluded: Sequence[object] = (),
    suppression: pd.DataFrame | None = None,
    reference: datetime = T,
    policy: Policy | None = None,
) -> Evaluation:
    context = PlanContext(campaign, policy or make_policy(), RUN, reference)
    return evaluate_audience(context, audience_of(features, excluded), suppression)


def by_user(evaluation: Evaluation) -> dict[Any, dict[str, Any]]:
    return evaluation.frame.set_index("user_id").to_dict("index")


def test_every_member_gets_exactly_one_row_in_input_order() -> None:
    # Given 50 customers, two excluded
    features = make_features(50)
    # When evaluated
    result = evaluate(make_campaign(holdout="20%"), features, excluded=[3, 7]).frame
    # Then one row per member, same order, excluded ones without variant
    assert result["user_id"].tolist() == list(range(1, 51))
    rows = result.set_index("user_id")
    assert rows.loc[3, "outcome"] == rows.loc[7, "outcome"] == "excluded"
    assert rows.loc[[3, 7], "variant_id"].isna().all()
    assert set(result["outcome"]) <= {"excluded", "holdout", PENDING}


def test_holdout_and_variants_follow_the_stable_hash() -> None:
    # Given a 10% holdout and two variants, and 2,000 customers
    campaign = make_campaign(holdout="10%")
    result = evaluate(campaign, make_features(2000)).frame
    # Then each user's group is exactly funnelcast.ids' answer (stable on every machine)
    for user, outcome, variant in zip(result["user_id"], result["outcome"], result["variant_id"], strict=True):
        assert (outcome == "holdout") == in_holdout("promo_a", user, 1000)
        assert variant == pick_variant("promo_a", user, [("a", 1), ("b", 1)])
    share = (result["outcome"] == "holdout").mean()
    assert 0.07 < share < 0.13
    # and the send id of a pending user is the run's stable id
    pending = result[result["outcome"] == PENDING].iloc[0]
    assert pending["send_id"] == send_id(RUN, pending["user_id"])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5), min_size=2, max_size=4).filter(lambda w: sum(w) > 0))
def test_a_variant_of_weight_zero_is_never_chosen(weights: list[int]) -> None:
    # Given variants some of which weigh 0
    variants = [{"id": f"v{i}", "weight": w, "messages": {"sms": {"template": "x"}}} for i, w in enumerate(weights)]
    campaign = make_campaign(channels=["sms"], variants=variants)
    # When 300 users are evaluated
    chosen = set(evaluate(campaign, make_features(300)).frame["variant_id"])
    # Then no zero-weight variant appears
    assert not chosen & {f"v{i}" for i, w in enumerate(weights) if w == 0}


def test_channel_waterfall_contact_consent_and_purpose() -> None:
    # Given users lacking one thing each
    features = make_features(6)
    features.loc[0, "kakao_friend"] = False  # 1: not a friend -> SMS only
    features.loc[1, "consent_kakao"] = False  # 2: no Kakao ad consent -> SMS only
    features.loc[2, ["kakao_friend", "consent_sms"]] = [False, False]  # 3: nothing left
    features.loc[3, "phone"] = "  "  # 4: blank phone -> no channel at all
    features.loc[4, "phone"] = None  # 5: missing phone
    rows = by_user(evaluate(make_campaign(), features))
    # Then
    assert rows[1]["waterfall"] == ("sms",)
    assert rows[2]["waterfall"] == ("sms",)
    assert [rows[u]["outcome"] for u in (3, 4, 5)] == ["no_channel"] * 3
    assert rows[6]["waterfall"] == ("kakao_brand", "sms")
    assert rows[6]["channel"] == "kakao_brand"
    # And an informational campaign needs no marketing consent
    informational = make_campaign(purpose="informational", channels=["kakao_alimtalk", "sms"])
    rows = by_user(evaluate(informational, features))
    assert rows[2]["waterfall"] == ("kakao_alimtalk", "sms")
    assert rows[3]["waterfall"] == ("kakao_alimtalk", "sms")  # consent matters for advertising only
    assert rows[4]["outcome"] == "no_channel"


def test_missing_contact_and_consent_columns_mean_no_channel() -> None:
    # Given features without phone/email/push columns at all
    features = make_features(3).drop(columns=["phone", "email", "push_endpoint", "consent_sms"])
    result = evaluate(make_campaign(channels=["sms", "email", "push"]), features).frame
    # Then every user is no_channel, none is lost
    assert result["outcome"].tolist() == ["no_channel"] * 3
    # And a missing consent column is "no consent" for advertising
    features = make_features(2).drop(columns=["consent_sms"])
    assert evaluate(make_campaign(channels=["sms"]), features).frame["outcome"].tolist() == ["no_channel"] * 2


def test_suppression_snapshot_rows() -> None:
    # Given feedback's suppression rows (user ids as strings, as feedback writes them)
    suppression = pd.DataFrame(
        {
            "user_id": ["1", "2", "3", "4", "5"],
            "channel": [None, "kakao_brand", None, None, "sms"],
            "topic": [None, None, "promo", "promo", None],
            "until": [pd.NaT, pd.NaT, T + timedelta(days=3), T - timedelta(hours=1), pd.NaT],
            "reason": ["unsubscribe:all", "unsubscribe:channel", "ignored:3", "negative:complaint", "x"],
        }
    )
    features = make_features(6)
    features.loc[4, "kakao_friend"] = False  # 5 can only get SMS, and SMS is off
    rows = by_user(evaluate(make_campaign(), features, suppression=suppression))
    # Then all-channels-off and a running topic pause suppress; a consent-off channel leaves the waterfall
    assert rows[1]["reason"] == "suppressed:all_channels"
    assert rows[2]["waterfall"] == ("sms",)
    assert rows[3]["reason"] == "suppressed:topic:promo"
    assert rows[4]["outcome"] == PENDING  # the pause ended an hour ago
    assert rows[5]["reason"] == "suppressed:channels_off"
    assert rows[6]["outcome"] == PENDING


def test_missing_and_invalid_time_zones_use_the_policy_default_and_are_counted() -> None:
    # Given one missing, one invalid and one valid foreign zone
    features = make_features(4)
    features["timezone"] = [None, "Mars/Olympus", "America/New_York", "Asia/Seoul"]
    evaluation = evaluate(make_campaign(), features, policy=make_policy(default_timezone="Asia/Tokyo"))
    # Then
    assert evaluation.frame["timezone"].tolist() == ["Asia/Tokyo", "Asia/Tokyo", "America/New_York", "Asia/Seoul"]
    assert evaluation.counts["timezone_defaulted"] == 2
    # And a frame without a timezone column at all defaults everyone
    evaluation = evaluate(make_campaign(), make_features(3).drop(columns=["timezone"]))
    assert evaluation.counts["timezone_defaulted"] == 3


def test_send_window_makes_users_wait_in_their_own_time_zone() -> None:
    # Given 10:00 in Seoul = 20:00 the day before in New York, window 09:00-20:00
    features = make_features(2)
    features.loc[1, "timezone"] = "America/New_York"
    campaign = make_campaign(send_window={"start": "09:00", "end": "20:00"})
    rows = by_user(evaluate(campaign, features))
    # Then Seoul goes now; New York waits until 09:00 local (14:00 UTC), never earlier
    assert rows[1]["not_before"] == T
    assert rows[2]["not_before"] == datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    assert rows[2]["not_after"] == datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    assert str(rows[2]["local_day"]) == "2026-12-01"


def test_night_ban_holds_advertising_without_night_consent_only() -> None:
    # Given 22:00 in Seoul (13:00 UTC) and no send window
    at_night = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    features = make_features(2)
    features.loc[1, "consent_night_ads"] = True
    advertising = by_user(evaluate(make_campaign(), features, reference=at_night))
    informational = by_user(
        evaluate(make_campaign(purpose="informational", channels=["sms"]), features, reference=at_night)
    )
    # Then advertising waits until 08:00 local (23:00 UTC) unless the user consented to night ads
    assert advertising[1]["not_before"] == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    assert advertising[2]["not_before"] == at_night
    assert informational[1]["not_before"] == at_night


ZONES = ["Asia/Seoul", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]


@settings(max_examples=40, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    minutes=st.integers(min_value=0, max_value=60 * 24 * 366),
    start=st.integers(min_value=0, max_value=23),
    length=st.integers(min_value=1, max_value=23),
    night_consent=st.booleans(),
)
def test_planned_send_time_is_never_early_and_always_allowed(
    zone: str, minutes: int, start: int, length: int, night_consent: bool
) -> None:
    # Given any reference time, zone, window and night-ads consent
    reference = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    window = {"start": f"{start:02d}:00", "end": f"{(start + length) % 24:02d}:00"}
    features = make_features(1, timezone=[zone], consent_night_ads=[night_consent])
    campaign = make_campaign(send_window=window)
    row = evaluate(campaign, features, reference=reference).frame.iloc[0]
    if row["outcome"] == "skipped":
        return  # the window lies wholly inside the night ban: no allowed minute exists
    # Then the send is not before the reference, and its local time is allowed
    opens = row["not_before"]
    assert opens >= reference
    local = opens.astimezone(ZoneInfo(zone)).time()
    assert TimeWindow.model_validate(window).contains(local)
    night = TimeWindow.model_validate({"start": "21:00", "end": "08:00"})
    assert night_consent or not night.contains(local)
    # And no earlier minute after the reference was allowed (the user waits no longer than needed)
    if opens > reference:
        before = (opens - timedelta(minutes=1)).astimezone(ZoneInfo(zone)).time()
        assert not TimeWindow.model_validate(window).contains(before) or (not night_consent and night.contains(before))


def test_template_variables_are_only_columns_the_templates_name() -> None:
    # Given templates naming name and a missing column
    campaign = make_campaign(
        channels=["email"],
        variants=[
            {
                "id": "a",
                "weight": 1,
                "messages": {"email": {"template": "{{ name }} {{ top_category }}", "subject": "s"}},
            }
        ],
    )
    # Then only columns that exist travel
    assert template_variables(campaign, ["user_id", "name", "email", "rfm_r"]) == ["name"]


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_audiences(n: int) -> None:
    # Given an empty or single-member audience
    evaluation = evaluate(make_campaign(), make_features(n))
    # Then the frame has one row per member and the counts say so
    assert len(evaluation.frame) == n
    assert evaluation.counts["audience"] == n


def test_a_suppression_snapshot_without_user_ids_is_a_clear_error() -> None:
    broken = pd.DataFrame({"customer": ["1"], "channel": ["sms"], "topic": [None], "until": [pd.NaT]})
    with pytest.raises(DataContractError, match="suppression snapshot has no user_id column"):
        evaluate(make_campaign(), make_features(1), suppression=broken)
