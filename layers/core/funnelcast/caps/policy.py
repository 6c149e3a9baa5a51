"""Fatigue caps, pure: which caps apply to a send, local day / ISO week keys, checks against counters.

No boto3 here. ``funnelcast.caps.store.CapStore`` (DynamoDB) and the planner share these rules, so a
user the planner thinks fits is exactly a user the store's conditional write accepts.

API for the planner (priority arbitration)
------------------------------------------
::

    from funnelcast.caps.policy import UserCapState, first_refusing_cap
    from funnelcast.caps.store import CapStore

    usage = CapStore(table, policy).usage_of(pending_users, weeks=weeks_between(first_day, last_day))
    # dict[user_id, UserCapState] from BatchGetItem (100 user-weeks per request; a Scan for huge slots)

    state = usage.get(user_id) or UserCapState.empty(user_id)
    for campaign in campaigns_due_in_this_slot_sorted_by_priority_then_id:
        cap = first_refusing_cap(
            policy, state,
            channel="sms", topic=campaign.topic, campaign_id=campaign.id,
            local_day=planned_local_day,          # the user's LOCAL calendar day of the planned send
            sent_at=planned_send_time_utc,        # UTC; compared with resend_after
            resend_after=campaign.resend_after,
        )
        if cap is None:            # fits: count it before planning the next (lower priority) campaign
            state = state.with_send(
                send_id=..., channel="sms", topic=campaign.topic, campaign_id=campaign.id,
                local_day=planned_local_day, sent_at=planned_send_time_utc,
            )
        # else: cap == "resend_after" -> outcome resend_after; cap is a name such as "day",
        # "week:sms", "week:topic:promo" -> "capped:<cap>" (or "lower_priority" when a campaign
        # planned earlier in this slot took the place: compare with the state before the slot)

``first_refusing_cap`` checks ``resend_after`` first (across every week the state holds), then
every applicable cap of the policy in policy order, and returns the first that refuses or ``None``.

The sender side (``CapStore.reserve(Reservation) -> ReserveResult``) is in ``caps/store.py``.

Counting
--------
* Days and weeks are the user's LOCAL calendar: ``local_day`` is computed by the caller in the
  user's time zone; the ISO week (Monday-Sunday) comes from it (``week_key``).
* A send increments, for its week and for its day of week: the total, its channel, its topic (when
  it has one) and its campaign. Counter names (also the DynamoDB attribute names) are
  ``n_w`` / ``n_d<1-7>`` followed by ``""`` (total), ``_ch_<channel>``, ``_tp_<topic>``,
  ``_cp_<campaign>``.
* A cap ``{max: m, per: day|week, channel|topic|campaign: x}`` holds while its counter is < m
  before the send.
* ``resend_after``: refused while the campaign's latest send to the user is later than
  ``sent_at - resend_after`` (exactly ``resend_after`` later is allowed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from funnelcast.rules.models import Cap, CapScope, Policy

RESEND_AFTER = "resend_after"
_SEPARATOR = "|"


@dataclass(frozen=True)
class Reservation:
    """One send asking for its place under every cap (built by the sender per attempt)."""

    user_id: int | str
    send_id: str
    campaign_id: str
    channel: str  # the channel being attempted now
    topic: str | None
    local_day: date  # the user's local calendar day at send time
    sent_at: datetime  # UTC, for resend_after
    resend_after: timedelta | None


@dataclass(frozen=True)
class ReserveResult:
    """``cap`` names the refusing cap (``day``, ``week:sms``, ``week:topic:promo``, ``resend_after``)."""

    status: Literal["reserved", "already_reserved", "refused"]
    cap: str | None = None

    @property
    def reason(self) -> str | None:
        """The SPEC §3 reason code of a refusal: ``capped:<cap>`` or ``resend_after``."""
        if self.status != "refused":
            return None
        return RESEND_AFTER if self.cap == RESEND_AFTER else f"capped:{self.cap}"


def week_key(local_day: date) -> str:
    """ISO week of a local calendar day, ``2026-W49`` (weeks run Monday to Sunday)."""
    year, week, _ = local_day.isocalendar()
    return f"{year}-W{week:02d}"


def week_monday(key: str) -> date:
    """The Monday of an ISO week key made by :func:`week_key`."""
    year, week = key.split("-W")
    return date.fromisocalendar(int(year), int(week), 1)


def previous_week_key(key: str) -> str:
    return week_key(week_monday(key) - timedelta(days=7))


def weeks_between(first: date, last: date) -> list[str]:
    """ISO week keys of every week from ``first``'s to ``last``'s, in order."""
    monday = first - timedelta(days=first.isoweekday() - 1)
    weeks = []
    while monday <= last:
        weeks.append(week_key(monday))
        monday += timedelta(days=7)
    return weeks


def counter_names(*, channel: str, topic: str | None, campaign_id: str, weekday: int) -> tuple[str, ...]:
    """Every counter one send increments (week and day of week: total, channel, topic, campaign)."""
    scopes = ["", f"_ch_{channel}", f"_cp_{campaign_id}"]
    if topic is not None:
        scopes.append(f"_tp_{topic}")
    return tuple(f"{period}{scope}" for period in ("n_w", f"n_d{weekday}") for scope in scopes)


def channel_counter_names(channel: str, weekday: int) -> tuple[str, str]:
    """The two counters a channel move (waterfall fallback) shifts: week and day of ``channel``."""
    return f"n_w_ch_{channel}", f"n_d{weekday}_ch_{channel}"


def cap_counter(cap: Cap, weekday: int) -> str:
    """The counter a cap reads for a send on ``weekday`` (ISO, Monday = 1)."""
    period = "n_w" if cap.per is CapScope.WEEK else f"n_d{weekday}"
    if cap.channel is not None:
        return f"{period}_ch_{cap.channel.value}"
    if cap.topic is not None:
        return f"{period}_tp_{cap.topic}"
    if cap.campaign is not None:
        return f"{period}_cp_{cap.campaign}"
    return period


def applicable_caps(policy: Policy, *, channel: str, topic: str | None, campaign_id: str) -> list[Cap]:
    """The caps of ``policy`` a send on ``channel`` in ``topic`` for ``campaign_id`` counts against."""
    return [cap for cap in policy.caps if cap.applies(channel=channel, topic=topic, campaign=campaign_id)]


def epoch_seconds(moment: datetime) -> int:
    """Whole UTC seconds; naive datetimes are UTC (SPEC §1)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(aware.timestamp())


@dataclass(frozen=True)
class SendEntry:
    """One reserved send inside a week: enough to move or give back its place exactly.

    ``moved_from`` lists the channels the send already left (waterfall fallback), so a late
    redelivery of an earlier channel's job never moves the place back.
    """

    send_id: str
    channel: str
    weekday: int
    campaign_id: str
    topic: str | None
    sent_at: int  # epoch seconds UTC
    moved_from: tuple[str, ...] = ()

    def encode(self) -> str:
        """``channel|weekday|campaign|topic|sent_at|moved,from`` (rule ids and channels never hold ``|`` or ``,``)."""
        fields = (self.channel, str(self.weekday), self.campaign_id, self.topic or "", str(self.sent_at))
        return _SEPARATOR.join((*fields, ",".join(self.moved_from)))

    @classmethod
    def decode(cls, send_id: str, text: str) -> SendEntry:
        channel, weekday, campaign_id, topic, sent_at, *rest = text.split(_SEPARATOR)
        moved_from = tuple(c for c in rest[0].split(",") if c) if rest else ()
        return cls(send_id, channel, int(weekday), campaign_id, topic or None, int(sent_at), moved_from)

    def moved_to(self, channel: str) -> SendEntry:
        """This send after falling back to ``channel``."""
        return replace(self, channel=channel, moved_from=(*self.moved_from, self.channel))

    def counters(self) -> tuple[str, ...]:
        return counter_names(channel=self.channel, topic=self.topic, campaign_id=self.campaign_id, weekday=self.weekday)


@dataclass(frozen=True)
class WeekUsage:
    """What one user used in one local ISO week: counters, reserved sends, last send per campaign."""

    week: str
    counters: Mapping[str, int] = field(default_factory=dict)
    sends: Mapping[str, SendEntry] = field(default_factory=dict)
    last_sent: Mapping[str, int] = field(default_factory=dict)  # campaign id -> epoch seconds

    def count(self, name: str) -> int:
        return self.counters.get(name, 0)

    def with_send(self, entry: SendEntry) -> WeekUsage:
        counters = dict(self.counters)
        for name in entry.counters():
            counters[name] = counters.get(name, 0) + 1
        last = dict(self.last_sent)
        last[entry.campaign_id] = entry.sent_at
        return replace(self, counters=counters, sends={**self.sends, entry.send_id: entry}, last_sent=last)

    def without_send(self, send_id: str) -> WeekUsage:
        """The week after giving back ``send_id``'s place (unchanged when it holds none)."""
        entry = self.sends.get(send_id)
        if entry is None:
            return self
        counters = dict(self.counters)
        for name in entry.counters():
            counters[name] = counters.get(name, 0) - 1
        sends = {k: v for k, v in self.sends.items() if k != send_id}
        last = dict(self.last_sent)
        last.pop(entry.campaign_id, None)
        others = [s.sent_at for s in sends.values() if s.campaign_id == entry.campaign_id]
        if others:
            last[entry.campaign_id] = max(others)
        return replace(self, counters=counters, sends=sends, last_sent=last)

    def with_channel(self, send_id: str, channel: str) -> WeekUsage:
        """The week after moving ``send_id`` to ``channel`` (fallback): totals unchanged."""
        entry = self.sends[send_id]
        counters = dict(self.counters)
        for name in channel_counter_names(entry.channel, entry.weekday):
            counters[name] = counters.get(name, 0) - 1
        for name in channel_counter_names(channel, entry.weekday):
            counters[name] = counters.get(name, 0) + 1
        return replace(self, counters=counters, sends={**self.sends, send_id: entry.moved_to(channel)})


@dataclass(frozen=True)
class UserCapState:
    """One user's usage over the weeks a snapshot holds (immutable: ``with_send`` returns a new one)."""

    user_id: int | str
    weeks: Mapping[str, WeekUsage] = field(default_factory=dict)

    @classmethod
    def empty(cls, user_id: int | str) -> UserCapState:
        return cls(user_id)

    def week(self, key: str) -> WeekUsage:
        return self.weeks.get(key) or WeekUsage(key)

    def last_sent(self, campaign_id: str) -> int | None:
        """Epoch seconds of the campaign's latest reserved send to this user, over every week held."""
        times = [w.last_sent[campaign_id] for w in self.weeks.values() if campaign_id in w.last_sent]
        return max(times) if times else None

    def holds(self, send_id: str) -> bool:
        return any(send_id in w.sends for w in self.weeks.values())

    def with_send(
        self,
        *,
        send_id: str,
        channel: str,
        topic: str | None,
        campaign_id: str,
        local_day: date,
        sent_at: datetime,
    ) -> UserCapState:
        """This state with one more send counted (the planner plans campaigns in priority order)."""
        key = week_key(local_day)
        entry = SendEntry(send_id, channel, local_day.isoweekday(), campaign_id, topic, epoch_seconds(sent_at))
        return replace(self, weeks={**self.weeks, key: self.week(key).with_send(entry)})


def refuses_resend(last_sent: int | None, sent_at: datetime, resend_after: timedelta | None) -> bool:
    """Whether ``resend_after`` forbids a send at ``sent_at`` after a send at ``last_sent``."""
    if resend_after is None or last_sent is None:
        return False
    return last_sent > epoch_seconds(sent_at) - int(resend_after.total_seconds())


def first_refusing_cap(
    policy: Policy,
    state: UserCapState,
    *,
    channel: str,
    topic: str | None,
    campaign_id: str,
    local_day: date,
    sent_at: datetime,
    resend_after: timedelta | None,
) -> str | None:
    """The name of the first cap refusing this send (``resend_after`` checked first), or ``None``."""
    if refuses_resend(state.last_sent(campaign_id), sent_at, resend_after):
        return RESEND_AFTER
    usage = state.week(week_key(local_day))
    weekday = local_day.isoweekday()
    for cap in applicable_caps(policy, channel=channel, topic=topic, campaign_id=campaign_id):
        if usage.count(cap_counter(cap, weekday)) >= cap.max:
            return cap.name
    return None


def move_caps(policy: Policy, channel: str) -> list[Cap]:
    """Caps a channel move must check: only those of the new channel (totals do not change)."""
    return [cap for cap in policy.caps if cap.channel is not None and cap.channel.value == channel]


def first_refusing_move_cap(policy: Policy, usage: WeekUsage, entry: SendEntry, channel: str) -> str | None:
    """The first cap of ``channel`` refusing to take over ``entry`` (counted on the send's own day)."""
    for cap in move_caps(policy, channel):
        if usage.count(cap_counter(cap, entry.weekday)) >= cap.max:
            return cap.name
    return None


def exceeded_caps(policy: Policy, usage: WeekUsage, weekdays: Sequence[int] = range(1, 8)) -> list[str]:
    """Every ``cap@counter`` whose counter is above its max in ``usage`` (used by tests and checks)."""
    problems: list[str] = []
    for cap in policy.caps:
        days = [1] if cap.per is CapScope.WEEK else list(weekdays)
        for weekday in days:
            name = cap_counter(cap, weekday)
            if usage.count(name) > cap.max:
                problems.append(f"{cap.name}@{name}={usage.count(name)}")
    return problems
