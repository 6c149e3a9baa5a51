"""Who in a campaign's audience may get which message, through which channel and when (pure, vectorised).

One frame in (the audience rows of the snapshot's features, an ``excluded`` flag per row), one frame
out with a provisional decision per row. Rows still ``pending`` at the end are eligible: the priority
arbitration (:mod:`funnelcast.planning.arbitration`) turns them into ``queued`` / ``waiting`` or a cap
refusal. The order of the checks is the order a marketer reads a decision in:

``excluded`` -> ``holdout`` -> ``no_channel`` (contact + consent + purpose, SPEC §2.4) ->
``suppressed`` (feedback's suppression snapshot) -> send window and night ban (``waiting:<until>``).

Only per-group work (time zones, channel masks) runs in Python loops over distinct values; per-user
work is numpy, except the stable SHA-256 hashes (holdout, variant, send id) that must match
:mod:`funnelcast.ids` bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from funnelcast.errors import DataContractError
from funnelcast.ids import in_holdout, pick_variant, send_id
from funnelcast.rules.models import Campaign, Channel, Policy, Purpose
from funnelcast.sending.windows import next_window

PENDING = "pending"
"""Provisional outcome of an eligible row before caps and priority decide it."""

CONTACT_COLUMNS: dict[str, tuple[str, ...]] = {
    Channel.EMAIL.value: ("email",),
    Channel.SMS.value: ("phone",),
    Channel.PUSH.value: ("push_endpoint",),
    Channel.KAKAO_ALIMTALK.value: ("phone",),
    # A brand message goes to a Kakao friend, addressed by phone number (the senders need both).
    Channel.KAKAO_BRAND.value: ("phone", "kakao_friend"),
    Channel.WEBHOOK.value: (),
}
CONSENT_COLUMNS: dict[str, str | None] = {
    Channel.EMAIL.value: "consent_email",
    Channel.SMS.value: "consent_sms",
    Channel.PUSH.value: "consent_push",
    Channel.KAKAO_ALIMTALK.value: "consent_kakao",
    Channel.KAKAO_BRAND.value: "consent_kakao",
    Channel.WEBHOOK.value: None,  # a webhook feeds the customer's own system, no per-user consent
}
NIGHT_CONSENT_COLUMN = "consent_night_ads"
TIMEZONE_COLUMN = "timezone"


@dataclass(frozen=True)
class PlanContext:
    """One campaign run: the rules it follows and the instant its sends are planned from."""

    campaign: Campaign
    policy: Policy
    run_id: str
    reference: datetime
    """UTC instant the sends are planned from: the scheduled time, or now when the planner runs late."""


@dataclass
class Evaluation:
    """The provisional decisions of one campaign and what was counted on the way."""

    context: PlanContext
    frame: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


@cache
def zone(name: str) -> ZoneInfo | None:
    """The IANA zone of ``name``, ``None`` when it is not one (cached: few distinct values)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def resolve_timezones(values: pd.Series, default: str) -> tuple[pd.Series, int]:
    """Each user's valid IANA time zone; missing or invalid ones become ``default``.

    Returns the resolved names and how many rows fell back to the default (reported in the summary).
    """
    text = values.astype("string")
    distinct = [name for name in text.dropna().unique() if zone(str(name)) is not None]
    valid = text.isin(distinct).fillna(False).to_numpy(dtype=bool)
    resolved = pd.Series(np.where(valid, text.fillna(default).to_numpy(dtype=object), default), index=values.index)
    return resolved.astype(object), int((~valid).sum())


def _present(frame: pd.DataFrame, column: str) -> np.ndarray:
    """True where ``column`` holds a usable value (non-null, non-blank; ``True`` for booleans)."""
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    series = frame[column]
    if column == "kakao_friend":
        return _true(frame, column)
    present = series.notna().to_numpy(dtype=bool, copy=True)
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        stripped = series.astype("string").str.strip().fillna("")
        present &= (stripped != "").to_numpy(dtype=bool)
    return present


def _true(frame: pd.DataFrame, column: str) -> np.ndarray:
    """True where a boolean-ish column is true (missing column or null: false, never assumed)."""
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    series = frame[column]
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.fillna(False).to_numpy(dtype=bool, copy=True)
    text = series.astype("string").str.strip().str.lower()
    return text.isin(["true", "1", "yes", "y", "t", "1.0"]).fillna(False).to_numpy(dtype=bool, copy=True)


def reachable_channels(frame: pd.DataFrame, campaign: Campaign) -> dict[str, np.ndarray]:
    """Per campaign channel, who can receive it: contact present and, for advertising, consent given."""
    advertising = campaign.purpose is Purpose.ADVERTISING
    result: dict[str, np.ndarray] = {}
    for channel in campaign.channels:
        name = channel.value
        mask = np.ones(len(frame), dtype=bool)
        for column in CONTACT_COLUMNS[name]:
            mask &= _present(frame, column)
        consent = CONSENT_COLUMNS[name]
        if advertising and consent is not None:
            mask &= _true(frame, consent)
        result[name] = mask
    return result


@dataclass(frozen=True)
class Suppressions:
    """The parts of ``suppression/latest.parquet`` that concern one campaign, as user-id sets (strings)."""

    all_channels: frozenset[str] = frozenset()
    channels: dict[str, frozenset[str]] = field(default_factory=dict)
    topic: frozenset[str] = frozenset()

    @classmethod
    def for_campaign(cls, frame: pd.DataFrame | None, campaign: Campaign, at: datetime) -> Suppressions:
        """Rows: channel set + topic null = that channel's consent off; channel and topic null = all off;
        topic = the campaign's topic with ``until`` null or after ``at`` = topic paused."""
        if frame is None or frame.empty:
            return cls()
        if "user_id" not in frame.columns:
            raise DataContractError(
                f"suppression snapshot has no user_id column (columns: {', '.join(map(str, frame.columns))})"
            )
        users = frame["user_id"].astype(str)
        channel = frame["channel"].astype("string") if "channel" in frame else pd.Series(pd.NA, index=frame.index)
        topic = frame["topic"].astype("string") if "topic" in frame else pd.Series(pd.NA, index=frame.index)
        until = pd.to_datetime(frame["until"], utc=True) if "until" in frame else pd.Series(pd.NaT, index=frame.index)
        no_topic = topic.isna()
        everything = users[no_topic & channel.isna()]
        per_channel = {
            c.value: frozenset(users[no_topic & (channel == c.value).fillna(False)]) for c in campaign.channels
        }
        paused = pd.Series(False, index=frame.index)
        if campaign.topic is not None:
            running = until.isna() | (until > pd.Timestamp(at))
            paused = (topic == campaign.topic).fillna(False) & running
        return cls(frozenset(everything), per_channel, frozenset(users[paused]))


def _send_windows(
    context: PlanContext, timezones: np.ndarray, night: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: when its window opens (UTC), when it closes, and the local day it opens on.

    Computed once per distinct (time zone, night-ads consent) pair with the senders' own window rule
    (:func:`funnelcast.sending.windows.next_window`), so planner and sender never disagree.
    ``NaT`` opens means no allowed minute within two days.
    """
    n = len(timezones)
    opens = np.full(n, None, dtype=object)
    closes = np.full(n, None, dtype=object)
    days = np.full(n, None, dtype=object)
    if n == 0:
        return opens, closes, days
    keys = pd.DataFrame({"tz": timezones, "night": night})
    for (tz_name, consent), rows in keys.groupby(["tz", "night"], sort=False).indices.items():
        tz = zone(str(tz_name))
        assert tz is not None  # resolved before
        window = next_window(context.reference, context.campaign, context.policy.compliance, tz, bool(consent))
        if window is None:
            continue
        opened, closed = window
        opens[rows] = opened
        closes[rows] = closed
        days[rows] = opened.astimezone(tz).date()
    return opens, closes, days


def evaluate_audience(
    context: PlanContext,
    audience: pd.DataFrame,
    suppression: pd.DataFrame | None = None,
) -> Evaluation:
    """Provisional decisions for every row of ``audience`` (``user_id``, ``excluded`` and feature columns).

    Rows keep their order. Outcomes: ``excluded``, ``holdout``, ``no_channel``, ``suppressed``,
    ``skipped`` (no allowed minute within two days) or :data:`PENDING` with the channel waterfall, the
    send id and ``not_before`` / ``not_after`` / ``local_day`` of the planned send.
    """
    campaign = context.campaign
    n = len(audience)
    frame = audience.reset_index(drop=True)
    users = frame["user_id"].tolist()
    counts: dict[str, int] = {"audience": n}

    outcome = np.full(n, PENDING, dtype=object)
    reason = np.full(n, PENDING, dtype=object)
    excluded = frame["excluded"].fillna(False).to_numpy(dtype=bool) if "excluded" in frame else np.zeros(n, bool)
    outcome[excluded] = reason[excluded] = "excluded"

    weights = [(variant.id, variant.weight) for variant in campaign.variants]
    variant = np.array(
        [
            None if skip else pick_variant(campaign.id, user, weights)
            for user, skip in zip(users, excluded, strict=True)
        ],
        dtype=object,
    )
    open_rows = outcome == PENDING
    if campaign.holdout > 0:
        held = np.array(
            [
                bool(live) and in_holdout(campaign.id, user, campaign.holdout)
                for user, live in zip(users, open_rows, strict=True)
            ],
            dtype=bool,
        )
        outcome[held] = reason[held] = "holdout"

    tz_column = frame[TIMEZONE_COLUMN] if TIMEZONE_COLUMN in frame else pd.Series(None, index=frame.index, dtype=object)
    timezones, defaulted = resolve_timezones(tz_column, context.policy.default_timezone)
    counts["timezone_defaulted"] = defaulted

    reachable = reachable_channels(frame, campaign)
    can_any = np.zeros(n, dtype=bool)
    for mask in reachable.values():
        can_any |= mask
    no_channel = (outcome == PENDING) & ~can_any
    outcome[no_channel] = "no_channel"
    reason[no_channel] = "no_channel"

    blocked = Suppressions.for_campaign(suppression, campaign, context.reference)
    user_text = pd.Series(users, dtype=object).astype(str)
    everything_off = user_text.isin(blocked.all_channels).to_numpy(dtype=bool)
    topic_paused = user_text.isin(blocked.topic).to_numpy(dtype=bool)
    pending = outcome == PENDING
    hit = pending & everything_off
    outcome[hit] = "suppressed"
    reason[hit] = "suppressed:all_channels"
    hit = (outcome == PENDING) & topic_paused
    outcome[hit] = "suppressed"
    reason[hit] = f"suppressed:topic:{campaign.topic}"
    # Channels the user turned off drop out of the waterfall; nothing left means suppressed.
    bits = np.zeros(n, dtype=np.int64)
    for position, listed in enumerate(campaign.channels):
        allowed = reachable[listed.value] & ~user_text.isin(blocked.channels.get(listed.value, frozenset())).to_numpy(
            dtype=bool
        )
        bits |= allowed.astype(np.int64) << position
    hit = (outcome == PENDING) & (bits == 0)
    outcome[hit] = "suppressed"
    reason[hit] = "suppressed:channels_off"

    waterfall = np.full(n, None, dtype=object)
    channel = np.full(n, None, dtype=object)
    pending = outcome == PENDING
    for value in np.unique(bits[pending]):
        order = tuple(c.value for position, c in enumerate(campaign.channels) if int(value) >> position & 1)
        rows = pending & (bits == value)
        for row in np.flatnonzero(rows):  # tuples in an object array: numpy would broadcast a list
            waterfall[row] = order
        channel[rows] = order[0]

    night = _true(frame, NIGHT_CONSENT_COLUMN)
    opens = np.full(n, None, dtype=object)
    closes = np.full(n, None, dtype=object)
    days = np.full(n, None, dtype=object)
    index = np.flatnonzero(pending)
    opens[index], closes[index], days[index] = _send_windows(
        context, timezones.to_numpy(dtype=object)[index], night[index]
    )
    never = pending & pd.isna(opens)
    outcome[never] = "skipped"
    reason[never] = "skipped:no_window"
    waterfall[never] = None
    channel[never] = None

    pending = outcome == PENDING
    sends = np.full(n, None, dtype=object)
    sends[pending] = [send_id(context.run_id, users[i]) for i in np.flatnonzero(pending)]
    result = pd.DataFrame(
        {
            "user_id": pd.Series(users, dtype=frame["user_id"].dtype) if n else frame["user_id"],
            "variant_id": variant,
            "outcome": outcome,
            "reason": reason,
            "channel": channel,
            "waterfall": waterfall,
            "send_id": sends,
            "timezone": timezones.to_numpy(dtype=object),
            "night_ads": night,
            "not_before": opens,
            "not_after": closes,
            "local_day": days,
        }
    )
    return Evaluation(context, result, counts)


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (naive means UTC, SPEC §1)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def template_variables(campaign: Campaign, columns: Sequence[str]) -> list[str]:
    """Feature columns the campaign's templates name (only those travel in the send jobs)."""
    import liquid  # noqa: PLC0415  (parsing only; the senders render)

    environment = liquid.Environment()
    names: set[str] = set()
    for variant in campaign.variants:
        for message in variant.messages.values():
            for text in (message.template, message.subject, message.title):
                if text:
                    names.update(environment.parse(text).global_variables())
    return sorted(name for name in names if name in set(columns))
