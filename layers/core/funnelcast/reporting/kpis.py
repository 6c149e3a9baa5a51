"""KPIs with lift against the holdout. Pure pandas in, DataFrame out.

Conversion attribution is *last touch within the campaign*: a conversion event of the user within
``window`` after a sent delivery counts for the latest send of that campaign before it.
Lift compares treated (eligible, not holdout) users with the holdout, each from its own decision time
over the same ``window``: difference of two proportions, 95% CI by the unpooled Wald interval,
p-value by the pooled two-proportion z-test (two-sided).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

Z_95 = 1.959963984540054
#: Below this many users in either group the normal approximation behind the CI and the p-value is
#: rough; the report says so next to the number.
SMALL_GROUP = 30
GROUP = ["campaign_id", "variant_id", "channel"]
# Planner outcomes that mean the user was never eligible: they are not part of the treated group.
NOT_ELIGIBLE = {"excluded", "lower_priority", "resend_after", "skipped"}


@dataclass(frozen=True)
class LiftResult:
    treated_rate: float
    holdout_rate: float
    lift: float
    ci_low: float
    ci_high: float
    p_value: float


def lift_two_proportions(x_treated: int, n_treated: int, x_holdout: int, n_holdout: int) -> LiftResult:
    """Difference of proportions with an unpooled Wald 95% CI and a pooled z-test p-value.

    NaN where a group is empty; the p-value is 1.0 when the pooled variance is zero (no evidence).
    """
    nan = float("nan")
    if n_treated <= 0 or n_holdout <= 0:
        rate = x_treated / n_treated if n_treated > 0 else nan
        return LiftResult(rate, x_holdout / n_holdout if n_holdout > 0 else nan, nan, nan, nan, nan)
    p1, p0 = x_treated / n_treated, x_holdout / n_holdout
    diff = p1 - p0
    se = math.sqrt(p1 * (1 - p1) / n_treated + p0 * (1 - p0) / n_holdout)
    pooled = (x_treated + x_holdout) / (n_treated + n_holdout)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_treated + 1 / n_holdout))
    p_value = math.erfc(abs(diff / se_pooled) / math.sqrt(2)) if se_pooled > 0 else 1.0
    return LiftResult(p1, p0, diff, diff - Z_95 * se, diff + Z_95 * se, p_value)


def customer_event_names(customer_events: pd.DataFrame) -> pd.Series:
    """The event name column: ``event_type`` (SPEC §1) or ``event`` (older run directories)."""
    if "event_type" in customer_events:
        return customer_events["event_type"].astype(str)
    if "event" in customer_events:
        return customer_events["event"].astype(str)
    return pd.Series("", index=customer_events.index, dtype=object)


def attribute_conversions(
    deliveries: pd.DataFrame,
    customer_events: pd.DataFrame,
    *,
    event: str = "purchase",
    window: timedelta = timedelta(days=7),
    amount_field: str = "amount",
) -> pd.DataFrame:
    """Per sent ``send_id``: ``converted`` (bool) and ``revenue`` (sum of ``amount_field``)."""
    sent = deliveries[deliveries["status"] == "sent"][["send_id", "campaign_id", "user_id", "sent_at"]].copy()
    sent["user_id"] = sent["user_id"].astype(str)
    conversions = customer_events[customer_event_names(customer_events) == event].copy()
    conversions["user_id"] = conversions["user_id"].astype(str)
    conversions["ts"] = pd.to_datetime(conversions["ts"], utc=True)
    conversions["amount"] = (
        pd.to_numeric(conversions[amount_field], errors="coerce").fillna(0.0) if amount_field in conversions else 0.0
    )
    pairs = conversions[["user_id", "ts", "amount"]].reset_index(names="conversion_row").merge(sent, on="user_id")
    pairs = pairs[(pairs["ts"] > pairs["sent_at"]) & (pairs["ts"] <= pairs["sent_at"] + window)]
    # Last touch: per conversion and campaign, the latest send before it takes the credit.
    pairs = pairs.sort_values("sent_at").drop_duplicates(["conversion_row", "campaign_id"], keep="last")
    per_send = pairs.groupby("send_id").agg(revenue=("amount", "sum")).reset_index()
    result = sent[["send_id"]].merge(per_send, on="send_id", how="left")
    result["converted"] = result["revenue"].notna()
    result["revenue"] = result["revenue"].fillna(0.0)
    return result


def _converted_after_decision(
    decisions: pd.DataFrame, customer_events: pd.DataFrame, event: str, window: timedelta
) -> pd.Series:
    purchases = customer_events[customer_event_names(customer_events) == event][["user_id", "ts"]].copy()
    purchases["user_id"] = purchases["user_id"].astype(str)
    purchases["ts"] = pd.to_datetime(purchases["ts"], utc=True)
    frame = decisions[["user_id", "decided_at"]].reset_index(names="row").merge(purchases, on="user_id")
    hits = frame[(frame["ts"] > frame["decided_at"]) & (frame["ts"] <= frame["decided_at"] + window)]
    return decisions.index.to_series().isin(hits["row"])


def _converted_before_decision(decisions: pd.DataFrame, customer_events: pd.DataFrame, event: str) -> pd.Series:
    purchases = customer_events[customer_event_names(customer_events) == event][["user_id", "ts"]].copy()
    purchases["user_id"] = purchases["user_id"].astype(str)
    purchases["ts"] = pd.to_datetime(purchases["ts"], utc=True)
    if decisions.empty or purchases.empty:
        return pd.Series(False, index=decisions.index, dtype=bool)
    first = purchases.groupby("user_id")["ts"].min()
    before = decisions["user_id"].map(first)
    return (before.notna() & (before <= decisions["decided_at"])).astype(bool)


def compute_kpis(
    decisions: pd.DataFrame,
    deliveries: pd.DataFrame,
    feedback: pd.DataFrame,
    customer_events: pd.DataFrame,
    *,
    funnel_stages: dict[str, str] | None = None,
    segments: dict[str, str] | None = None,
    conversion_event: str = "purchase",
    window: timedelta = timedelta(days=7),
) -> pd.DataFrame:
    """One row per (campaign, variant, channel) with counts, rates and the campaign/variant lift.

    ``decisions``: DecisionRecord rows; ``deliveries``: DeliveryRecord rows; ``feedback``: normalised
    events (``send_id, type``); ``customer_events``: ``user_id, event_type (or event), ts[, amount]``.
    ``repurchase_rate`` (retention campaigns only): among treated users who had converted before their
    decision, the share converting again within ``window`` after it.
    """
    stages = funnel_stages or {}
    decisions = decisions.copy()
    decisions["user_id"] = decisions["user_id"].astype(str)
    decisions["decided_at"] = pd.to_datetime(decisions["decided_at"], utc=True)
    decisions["variant_id"] = decisions["variant_id"].fillna("(none)")
    decisions["channel"] = decisions["channel"].fillna("(none)")
    deliveries = deliveries.copy()
    deliveries["user_id"] = deliveries["user_id"].astype(str)
    deliveries["sent_at"] = pd.to_datetime(deliveries["sent_at"], utc=True)

    by_outcome = decisions.pivot_table(index=GROUP, columns="outcome", values="user_id", aggfunc="count", fill_value=0)
    counts = pd.DataFrame(index=by_outcome.index)
    counts["audience"] = by_outcome.sum(axis=1)
    for name, outcome in [
        ("holdout", "holdout"),
        ("capped", "capped"),
        ("waited", "waiting"),
        ("suppressed", "suppressed"),
    ]:
        counts[name] = by_outcome.get(outcome, 0)

    fb = feedback.groupby("send_id")["type"].agg(set) if len(feedback) else pd.Series(dtype=object)
    sends = deliveries.merge(
        attribute_conversions(deliveries, customer_events, event=conversion_event, window=window),
        on="send_id",
        how="left",
    )
    types = sends["send_id"].map(fb).apply(lambda t: t if isinstance(t, set) else set())
    sends["is_sent"] = sends["status"] == "sent"
    sends["is_failed"] = (sends["status"] == "failed") | types.apply(lambda t: bool(t & {"failed", "bounced"}))
    sends["is_delivered"] = types.apply(lambda t: "delivered" in t)
    sends["is_opened"] = types.apply(lambda t: bool(t & {"opened", "clicked"}))
    sends["is_clicked"] = types.apply(lambda t: "clicked" in t)
    sends["converted"] = sends["converted"].fillna(False).astype(bool)
    sends["revenue"] = sends["revenue"].fillna(0.0)
    send_counts = sends.groupby(GROUP).agg(
        sent=("is_sent", "sum"),
        failed=("is_failed", "sum"),
        delivered=("is_delivered", "sum"),
        opened=("is_opened", "sum"),
        clicked=("is_clicked", "sum"),
        converted=("converted", "sum"),
        revenue=("revenue", "sum"),
    )
    table = counts.join(send_counts, how="outer").fillna(0)
    int_columns = [c for c in table.columns if c != "revenue"]
    table[int_columns] = table[int_columns].astype("int64")
    table = table.reset_index()
    table["funnel_stage"] = [stages.get(str(c), "") for c in table["campaign_id"]]
    table["segment"] = [(segments or {}).get(str(c), "") for c in table["campaign_id"]]
    base = table["delivered"].where(table["delivered"] > 0, table["sent"])
    table["ctr"] = (table["clicked"] / base).where(base > 0)
    table["cvr"] = (table["converted"] / table["sent"]).where(table["sent"] > 0)
    table["revenue_per_recipient"] = (table["revenue"] / table["sent"]).where(table["sent"] > 0)

    decisions["converted_in_window"] = _converted_after_decision(decisions, customer_events, conversion_event, window)
    decisions["converted_before"] = _converted_before_decision(decisions, customer_events, conversion_event)
    lift_rows = []
    for (campaign_id, variant_id), treated in decisions[
        (decisions["outcome"] != "holdout") & ~decisions["outcome"].isin(NOT_ELIGIBLE)
    ].groupby(["campaign_id", "variant_id"]):
        holdout = decisions[(decisions["campaign_id"] == campaign_id) & (decisions["outcome"] == "holdout")]
        treated_users = treated.drop_duplicates("user_id")
        holdout_users = holdout.drop_duplicates("user_id")
        result = lift_two_proportions(
            int(treated_users["converted_in_window"].sum()),
            len(treated_users),
            int(holdout_users["converted_in_window"].sum()),
            len(holdout_users),
        )
        returning = treated_users[treated_users["converted_before"]]
        repurchase = float(returning["converted_in_window"].mean()) if len(returning) else float("nan")
        lift_rows.append(
            {
                "campaign_id": campaign_id,
                "variant_id": variant_id,
                "treated_n": len(treated_users),
                "holdout_n": len(holdout_users),
                "treated_rate": result.treated_rate,
                "holdout_rate": result.holdout_rate,
                "lift": result.lift,
                "lift_ci_low": result.ci_low,
                "lift_ci_high": result.ci_high,
                "p_value": result.p_value,
                "repurchase_rate": repurchase if stages.get(str(campaign_id)) == "retention" else float("nan"),
            }
        )
    lift = pd.DataFrame(
        lift_rows,
        columns=[
            "campaign_id",
            "variant_id",
            "treated_n",
            "holdout_n",
            "treated_rate",
            "holdout_rate",
            "lift",
            "lift_ci_low",
            "lift_ci_high",
            "p_value",
            "repurchase_rate",
        ],
    )
    return table.merge(lift, on=["campaign_id", "variant_id"], how="left").sort_values(GROUP).reset_index(drop=True)
