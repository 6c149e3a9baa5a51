"""Rebuild ``suppression/latest.parquet`` in bulk from the feedback log and the deliveries.

Rows: ``user_id, channel, topic, until, reason``. channel set + topic null + until null = that channel's
consent off; topic set = topic paused until ``until``; channel and topic null = every channel off.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd

from funnelcast.feedback.ingest import isin
from funnelcast.rules.models import Suppression
from funnelcast.storage import ObjectStore

SUPPRESSION_KEY = "suppression/latest.parquet"
COLUMNS = ["user_id", "channel", "topic", "until", "reason"]
#: Channels whose provider reports opens (SES open tracking). Elsewhere "unopened" means "unknown",
#: so only these count towards ``suppression.ignored``: an SMS is never an ignored send.
OPEN_TRACKED_CHANNELS = frozenset({"email"})
#: Policy files name reactions as verbs (SPEC: ``events: [complaint, unsubscribe]``); events use types.
POLICY_EVENT_TYPES = {
    "unsubscribe": "unsubscribed",
    "complaint": "complaint",
    "bounce": "bounced",
    "bounced": "bounced",
    "unsubscribed": "unsubscribed",
    "failed": "failed",
}


def build_suppression(
    events: pd.DataFrame, deliveries: pd.DataFrame, policy: Suppression, *, now: datetime
) -> pd.DataFrame:
    """Apply ``policy`` to de-duplicated ``events`` joined to ``deliveries`` on ``send_id``.

    Topic pauses still running at ``now`` are kept (``until > now``); expired ones are dropped.
    ``ignored``: a user's last N delivered sends in a topic, on channels that report opens
    (``OPEN_TRACKED_CHANNELS``), all unopened pauses the topic from the last of them.
    ``negative``: a listed reaction (``complaint``, ``unsubscribe``) pauses the send's topic from its time.
    """
    rows: list[pd.DataFrame] = []
    sends = deliveries[["send_id", "user_id", "channel", "topic"]].astype({"send_id": str, "user_id": str})
    joined = (
        events.astype({"send_id": str})
        .drop(columns=["user_id", "channel"], errors="ignore")
        .merge(sends, on="send_id", how="inner")
    )
    unsub = joined[joined["type"] == "unsubscribed"]
    if len(unsub):
        channel = None if policy.unsubscribe == "all" else unsub["channel"]
        rows.append(
            pd.DataFrame(
                {
                    "user_id": unsub["user_id"],
                    "channel": channel,
                    "topic": None,
                    "until": pd.NaT,
                    "reason": f"unsubscribe:{policy.unsubscribe}",
                }
            )
        )
    if policy.negative is not None:
        types = {POLICY_EVENT_TYPES.get(name, name) for name in policy.negative.events}
        negative = joined[joined["type"].isin(types) & joined["topic"].notna()]
        if len(negative):
            rows.append(
                pd.DataFrame(
                    {
                        "user_id": negative["user_id"],
                        "channel": None,
                        "topic": negative["topic"],
                        "until": negative["ts"] + policy.negative.topic_for,
                        "reason": "negative:" + negative["type"],
                    }
                )
            )
    if policy.ignored is not None:
        rows.append(_ignored(joined, deliveries, policy, sends))
    if not rows:
        return pd.DataFrame(columns=COLUMNS).astype({"until": "datetime64[us, UTC]"})
    result = pd.concat([r for r in rows if len(r)], ignore_index=True) if any(len(r) for r in rows) else None
    if result is None:
        return pd.DataFrame(columns=COLUMNS).astype({"until": "datetime64[us, UTC]"})
    return _one_row_per_key(result, now)


def _one_row_per_key(result: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Pauses still running at ``now``; per (user, channel, topic) the latest wins, a permanent one beats any date."""
    result = result.copy()
    result["until"] = pd.to_datetime(result["until"], utc=True)
    result = result[result["until"].isna() | (result["until"] > pd.Timestamp(now))]
    result = result.sort_values("until", na_position="last").drop_duplicates(
        ["user_id", "channel", "topic"], keep="last"
    )
    return result[COLUMNS].sort_values(["user_id", "reason"]).reset_index(drop=True)


def _ignored(joined: pd.DataFrame, deliveries: pd.DataFrame, policy: Suppression, sends: pd.DataFrame) -> pd.DataFrame:
    assert policy.ignored is not None
    engaged = joined.loc[joined["type"].isin(["opened", "clicked"]), "send_id"]
    delivered = joined.loc[joined["type"] == "delivered", ["send_id", "ts"]].drop_duplicates("send_id")
    history = delivered.merge(sends, on="send_id")
    history = history[history["topic"].notna() & history["channel"].isin(OPEN_TRACKED_CHANNELS)].sort_values("ts")
    history["unopened"] = ~isin(history["send_id"], engaged)
    last_n = history.groupby(["user_id", "topic"]).tail(policy.ignored.after)
    grouped = (
        last_n.groupby(["user_id", "topic"])
        .agg(count=("unopened", "size"), unopened=("unopened", "sum"), last=("ts", "max"))
        .reset_index()
    )
    hit = grouped[(grouped["count"] >= policy.ignored.after) & (grouped["unopened"] == grouped["count"])]
    return pd.DataFrame(
        {
            "user_id": hit["user_id"],
            "channel": None,
            "topic": hit["topic"],
            "until": hit["last"] + policy.ignored.topic_for,
            "reason": f"ignored:{policy.ignored.after}",
        }
    )


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.astype({"user_id": str, "channel": "string", "topic": "string", "reason": str}).to_parquet(
        buffer, index=False
    )
    return buffer.getvalue()


def apply_reactions(
    store: ObjectStore, events: pd.DataFrame, policy: Suppression, *, now: datetime, lookback_days: int = 90
) -> tuple[pd.DataFrame, int]:
    """Add what ``events`` (an unsubscribe, a complaint) change to ``suppression/latest.parquet`` at once.

    The immediate path of the feedback function: only the deliveries of these sends are read
    (newest day first, at most ``lookback_days``), not the whole log. ``suppression.ignored`` is
    left to the daily :func:`rebuild_suppression`, which also picks up events whose delivery was
    not found yet. Returns the new suppression frame and how many events had unknown send ids.
    """
    from funnelcast.feedback.ingest import find_deliveries, resolve_provider_ids  # noqa: PLC0415

    if events.empty:
        return read_suppression_frame(store), 0
    newest = max(now.astimezone(UTC).date(), pd.Timestamp(events["ts"].max()).date())
    deliveries = find_deliveries(store, set(events["send_id"].astype(str)), newest=newest, days=lookback_days)
    resolved = resolve_provider_ids(events, deliveries)
    known = isin(resolved["send_id"], deliveries["send_id"].astype(str).tolist())
    added = build_suppression(resolved[known], deliveries, policy.model_copy(update={"ignored": None}), now=now)
    current = read_suppression_frame(store)
    merged = _one_row_per_key(pd.concat([f for f in (current, added) if len(f)] or [added], ignore_index=True), now)
    store.put_bytes(SUPPRESSION_KEY, to_parquet_bytes(merged))
    return merged, int((~known).sum())


def read_suppression_frame(store: ObjectStore) -> pd.DataFrame:
    """``suppression/latest.parquet`` (user ids as text), empty before the first rebuild."""
    from funnelcast.errors import ObjectNotFoundError  # noqa: PLC0415

    try:
        frame = pd.read_parquet(io.BytesIO(store.get_bytes(SUPPRESSION_KEY)))
    except ObjectNotFoundError:
        return pd.DataFrame(columns=COLUMNS).astype({"until": "datetime64[us, UTC]"})
    return frame.astype({"user_id": str})


def rebuild_suppression(store: ObjectStore, policy: Suppression, *, now: datetime) -> tuple[pd.DataFrame, int]:
    """Read the whole log, set unknown send ids aside, write ``suppression/latest.parquet``.

    Returns the suppression frame and how many events had unknown send ids.
    """
    from funnelcast.feedback.ingest import read_deliveries, read_events, set_aside_unknown  # noqa: PLC0415

    deliveries = read_deliveries(store)
    events, unknown = set_aside_unknown(store, read_events(store), deliveries)
    frame = build_suppression(events, deliveries, policy, now=now)
    store.put_bytes(SUPPRESSION_KEY, to_parquet_bytes(frame))
    return frame, unknown
