"""Sends planned by earlier runs that no reservation holds yet (queued, or waiting for a window).

The cap table learns of a send only when its sender reserves it. Without this ledger an hourly
advertising campaign planned during the night ban would plan the same user again every hour, all
waiting for 08:00, and the senders would then refuse all but one (``resend_after``) — work and
confusing ``waiting`` outcomes for nothing. The planner keeps its handed-over sends in
``planning/pending.parquet`` and the arbitration counts them like stored sends, so ``resend_after``
and every cap see them.

An entry leaves when a reservation holds its send id (read with the user's cap weeks), or a day
after its planned time (sent, refused or failed by then). Entries of the runs being planned are
ignored, so a retried run does not refuse its own sends. Concurrent slots (different minutes
planned at the same moment) may lose each other's entries: the senders' reservation still
refuses the duplicate, so a lost entry costs work, never a message too many.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from funnelcast.caps.policy import UserCapState
from funnelcast.errors import ObjectNotFoundError
from funnelcast.planning.eligibility import Evaluation
from funnelcast.storage import ObjectStore

PENDING_KEY = "planning/pending.parquet"
KEEP_AFTER_PLANNED = timedelta(days=1)
COLUMNS = ["run_id", "send_id", "user_id", "campaign_id", "channel", "topic", "local_day", "not_before"]
HANDED_OVER = ("queued", "waiting")


def empty_pending() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in COLUMNS}).astype(
        {"not_before": "datetime64[us, UTC]"}
    )


def read_pending(store: ObjectStore) -> pd.DataFrame:
    """The ledger (user ids as text), empty before the first run."""
    try:
        body = store.get_bytes(PENDING_KEY)
    except ObjectNotFoundError:
        return empty_pending()
    return pd.read_parquet(io.BytesIO(body))


def write_pending(store: ObjectStore, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame[COLUMNS].to_parquet(buffer, index=False)
    store.put_bytes(PENDING_KEY, buffer.getvalue())


def with_pending(
    usage: Mapping[Any, UserCapState], pending: pd.DataFrame, users: Collection[Any], runs: Collection[str]
) -> dict[Any, UserCapState]:
    """``usage`` with the pending sends of ``users`` counted in (those no reservation holds yet).

    Parameters
    ----------
    usage
        The users' stored cap state (``CapStore.usage_of``).
    runs
        Run ids being planned now: their own entries (a retry) are not counted.
    """
    merged = dict(usage)
    by_text = {str(user): user for user in users}
    mine = relevant_pending(pending, runs)
    for row in mine[mine["user_id"].isin(list(by_text))].itertuples(index=False):
        user = by_text[str(row.user_id)]
        state = merged.get(user) or UserCapState.empty(user)
        if state.holds(str(row.send_id)):
            continue
        merged[user] = state.with_send(
            send_id=str(row.send_id),
            channel=str(row.channel),
            topic=None if pd.isna(row.topic) else str(row.topic),
            campaign_id=str(row.campaign_id),
            local_day=_as_date(row.local_day),
            sent_at=pd.Timestamp(row.not_before).to_pydatetime(),
        )
    return merged


def relevant_pending(pending: pd.DataFrame, runs: Collection[str]) -> pd.DataFrame:
    """The entries of runs other than ``runs`` (a retried run does not refuse its own sends)."""
    return pending[~pending["run_id"].isin(list(runs))]


def updated_pending(
    pending: pd.DataFrame,
    evaluations: Sequence[Evaluation],
    usage: Mapping[Any, UserCapState],
    now: datetime,
) -> pd.DataFrame:
    """The ledger after this slot: expired and reserved entries dropped, this slot's handed-over sends added."""
    runs = {evaluation.context.run_id for evaluation in evaluations}
    keep = pending[
        (pd.to_datetime(pending["not_before"], utc=True) > pd.Timestamp(now - KEEP_AFTER_PLANNED))
        & ~pending["run_id"].isin(list(runs))
    ]
    held = {send_id for state in usage.values() for week in state.weeks.values() for send_id in week.sends}
    keep = keep[~keep["send_id"].isin(list(held))]
    added = []
    for evaluation in evaluations:
        frame = evaluation.frame
        handed = frame[frame["outcome"].isin(HANDED_OVER).to_numpy(dtype=bool)]
        if handed.empty:
            continue
        campaign = evaluation.context.campaign
        added.append(
            pd.DataFrame(
                {
                    "run_id": evaluation.context.run_id,
                    "send_id": handed["send_id"].astype(str).to_numpy(),
                    "user_id": handed["user_id"].astype(str).to_numpy(),
                    "campaign_id": campaign.id,
                    "channel": handed["channel"].astype(str).to_numpy(),
                    "topic": campaign.topic,
                    "local_day": [_as_date(day).isoformat() for day in handed["local_day"]],
                    "not_before": pd.to_datetime(handed["not_before"], utc=True).to_numpy(),
                }
            )
        )
    if not added:
        return keep.reset_index(drop=True)
    frames = [frame for frame in (keep, *added) if not frame.empty]
    result = pd.concat(frames, ignore_index=True)
    result["not_before"] = pd.to_datetime(result["not_before"], utc=True).astype("datetime64[us, UTC]")
    return result[COLUMNS]


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
