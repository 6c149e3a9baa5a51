"""KPI math against hand-computed values; lift CI against a worked textbook example."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from funnelcast.reporting.kpis import attribute_conversions, compute_kpis, lift_two_proportions

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def test_lift_matches_hand_computed_wald_interval() -> None:
    # Given 60/200 treated and 40/200 holdout conversions
    # When the lift is computed
    result = lift_two_proportions(60, 200, 40, 200)
    # Then diff = 0.10, se = sqrt(.3*.7/200 + .2*.8/200) = 0.043012, CI = 0.10 ± 1.96*se
    se = math.sqrt(0.3 * 0.7 / 200 + 0.2 * 0.8 / 200)
    assert result.lift == pytest.approx(0.10)
    assert result.ci_low == pytest.approx(0.10 - 1.959964 * se, abs=1e-6)
    assert result.ci_high == pytest.approx(0.1843, abs=1e-4)
    # And the pooled z = 0.1 / sqrt(.25*.75*(2/200)) = 2.3094 -> p = 0.02092
    assert result.p_value == pytest.approx(0.02092, abs=1e-4)


def test_lift_is_nan_without_holdout() -> None:
    # Given no holdout users, When lifted, Then no number is invented
    result = lift_two_proportions(5, 10, 0, 0)
    assert math.isnan(result.lift)
    assert result.treated_rate == 0.5


@pytest.fixture
def run_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    decisions = pd.DataFrame(
        [
            {
                "campaign_id": "c1",
                "user_id": 1,
                "variant_id": "a",
                "outcome": "queued",
                "send_id": "s1",
                "channel": "email",
            },
            {
                "campaign_id": "c1",
                "user_id": 2,
                "variant_id": "a",
                "outcome": "queued",
                "send_id": "s2",
                "channel": "email",
            },
            {
                "campaign_id": "c1",
                "user_id": 3,
                "variant_id": "a",
                "outcome": "capped",
                "send_id": None,
                "channel": "email",
            },
            {
                "campaign_id": "c1",
                "user_id": 4,
                "variant_id": None,
                "outcome": "holdout",
                "send_id": None,
                "channel": None,
            },
            {
                "campaign_id": "c1",
                "user_id": 5,
                "variant_id": None,
                "outcome": "holdout",
                "send_id": None,
                "channel": None,
            },
        ]
    ).assign(decided_at=T0, reason="", run_id="r1")
    deliveries = pd.DataFrame(
        [
            {
                "send_id": "s1",
                "campaign_id": "c1",
                "user_id": 1,
                "variant_id": "a",
                "channel": "email",
                "status": "sent",
            },
            {
                "send_id": "s2",
                "campaign_id": "c1",
                "user_id": 2,
                "variant_id": "a",
                "channel": "email",
                "status": "sent",
            },
        ]
    ).assign(sent_at=T0)
    feedback = pd.DataFrame(
        [
            {"send_id": "s1", "type": "delivered"},
            {"send_id": "s1", "type": "clicked"},
            {"send_id": "s2", "type": "delivered"},
        ]
    )
    events = pd.DataFrame(
        [
            {"user_id": 1, "event": "purchase", "ts": T0 + timedelta(days=1), "amount": 30000},
            {"user_id": 2, "event": "purchase", "ts": T0 + timedelta(days=8), "amount": 99999},  # outside 7d
            {"user_id": 4, "event": "purchase", "ts": T0 + timedelta(days=2), "amount": 10000},
        ]
    )
    return decisions, deliveries, feedback, events


def test_kpis_by_hand(run_frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    # Given 2 sends (1 clicked + bought in window, 1 bought after the window), 1 capped, 2 holdout (1 bought)
    decisions, deliveries, feedback, events = run_frames
    # When KPIs are computed
    kpis = compute_kpis(decisions, deliveries, feedback, events, funnel_stages={"c1": "retention"})
    row = kpis[(kpis["variant_id"] == "a") & (kpis["channel"] == "email")].iloc[0]
    # Then counts, rates and revenue per recipient match the hand count
    assert (row["audience"], row["sent"], row["delivered"], row["capped"], row["clicked"]) == (3, 2, 2, 1, 1)
    assert row["converted"] == 1
    assert row["cvr"] == 0.5
    assert row["ctr"] == 0.5
    assert row["revenue_per_recipient"] == 15000
    # And lift: treated 1/3 (users 1,2,3 eligible) minus holdout 1/2
    assert row["lift"] == pytest.approx(1 / 3 - 1 / 2)
    holdout = kpis[kpis["variant_id"] == "(none)"].iloc[0]
    assert holdout["holdout"] == 2


def test_last_touch_within_campaign_credits_the_latest_send() -> None:
    # Given two sends of one campaign to a user, then a purchase
    deliveries = pd.DataFrame(
        [
            {"send_id": "early", "campaign_id": "c", "user_id": 1, "status": "sent", "sent_at": T0},
            {"send_id": "late", "campaign_id": "c", "user_id": 1, "status": "sent", "sent_at": T0 + timedelta(days=1)},
        ]
    )
    events = pd.DataFrame([{"user_id": 1, "event": "purchase", "ts": T0 + timedelta(days=2), "amount": 5}])
    # When attributed
    result = attribute_conversions(deliveries, events).set_index("send_id")
    # Then only the latest send converts
    assert bool(result.loc["late", "converted"])
    assert not bool(result.loc["early", "converted"])
