"""The pure cap policy: local ISO weeks, counters, the first refusing cap, and the planner's ``with_send``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnelcast.caps.policy import (
    RESEND_AFTER,
    ReserveResult,
    SendEntry,
    UserCapState,
    WeekUsage,
    applicable_caps,
    cap_counter,
    counter_names,
    exceeded_caps,
    first_refusing_cap,
    first_refusing_move_cap,
    previous_week_key,
    refuses_resend,
    week_key,
    week_monday,
    weeks_between,
)
from funnelcast.rules.models import Policy

CHANNELS = ["email", "sms", "push", "kakao_brand"]
TOPICS = [None, "promo", "cart"]
CAMPAIGNS = ["cart_recovery", "welcome", "vip"]
START = date(2026, 11, 30)  # a Monday

SPEC_POLICY = Policy.model_validate(
    {
        "kind": "policy",
        "caps": [
            {"max": 2, "per": "day"},
            {"max": 5, "per": "week"},
            {"max": 1, "per": "day", "channel": "sms"},
            {"max": 3, "per": "week", "topic": "promo"},
        ],
    }
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Random policies: unique scopes, small maxima (0 included) so caps bite."""
    caps = []
    seen: set[str] = set()
    for _ in range(draw(st.integers(0, 5))):
        scope = draw(st.sampled_from(["none", "channel", "topic", "campaign"]))
        cap: dict[str, object] = {"max": draw(st.integers(0, 4)), "per": draw(st.sampled_from(["day", "week"]))}
        if scope == "channel":
            cap["channel"] = draw(st.sampled_from(CHANNELS))
        elif scope == "topic":
            cap["topic"] = draw(st.sampled_from([t for t in TOPICS if t]))
        elif scope == "campaign":
            cap["campaign"] = draw(st.sampled_from(CAMPAIGNS))
        policy = Policy.model_validate({"kind": "policy", "caps": [cap]})
        if policy.caps[0].name not in seen:
            seen.add(policy.caps[0].name)
            caps.append(cap)
    return Policy.model_validate({"kind": "policy", "caps": caps})


@dataclass(frozen=True)
class Attempt:
    channel: str
    topic: str | None
    campaign_id: str
    day_offset: int
    minute: int
    resend_after: timedelta | None


attempts = st.builds(
    Attempt,
    channel=st.sampled_from(CHANNELS),
    topic=st.sampled_from(TOPICS),
    campaign_id=st.sampled_from(CAMPAIGNS),
    day_offset=st.integers(0, 13),
    minute=st.integers(0, 24 * 60 - 1),
    resend_after=st.sampled_from([None, timedelta(hours=1), timedelta(days=1), timedelta(days=7)]),
)


def when(attempt: Attempt) -> tuple[date, datetime]:
    local_day = START + timedelta(days=attempt.day_offset)
    sent_at = datetime(local_day.year, local_day.month, local_day.day, tzinfo=UTC) + timedelta(minutes=attempt.minute)
    return local_day, sent_at


def replay(policy: Policy, tried: list[Attempt]) -> tuple[UserCapState, list[str | None]]:
    """Apply attempts in time order the way the store does: count only those no cap refuses."""
    state = UserCapState.empty(7)
    answers: list[str | None] = []
    for number, attempt in enumerate(sorted(tried, key=when)):
        local_day, sent_at = when(attempt)
        common: dict[str, Any] = {
            "channel": attempt.channel,
            "topic": attempt.topic,
            "campaign_id": attempt.campaign_id,
        }
        cap = first_refusing_cap(
            policy, state, local_day=local_day, sent_at=sent_at, resend_after=attempt.resend_after, **common
        )
        answers.append(cap)
        if cap is None:
            state = state.with_send(send_id=f"s{number}", local_day=local_day, sent_at=sent_at, **common)
    return state, answers


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2198, 12, 1)))
def test_week_key_is_the_iso_week_from_monday_to_sunday(day: date) -> None:
    # Given any local day, When it is keyed, Then its week starts on the Monday on or before it
    monday = week_monday(week_key(day))
    assert monday.isoweekday() == 1
    assert monday <= day < monday + timedelta(days=7)
    # and the 7 days from that Monday share the key while the day before has the previous one
    assert {week_key(monday + timedelta(days=n)) for n in range(7)} == {week_key(day)}
    assert week_key(monday - timedelta(days=1)) == previous_week_key(week_key(day))


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2198, 12, 1)), st.integers(0, 120))
def test_weeks_between_lists_every_week_touched_once_in_order(first: date, span: int) -> None:
    # Given a range of local days, When its weeks are listed
    last = first + timedelta(days=span)
    weeks = weeks_between(first, last)
    # Then they are exactly the weeks of the days in the range, oldest first, no repeats
    assert weeks == sorted({week_key(first + timedelta(days=n)) for n in range(span + 1)}, key=week_monday)
    assert weeks_between(last, first - timedelta(days=7)) == []


def test_iso_week_crosses_the_calendar_year() -> None:
    # Given 2026-12-31 (Thursday) and 2027-01-03 (Sunday), Then they are the same ISO week 2026-W53
    assert week_key(date(2026, 12, 31)) == week_key(date(2027, 1, 3)) == "2026-W53"
    assert week_key(date(2027, 1, 4)) == "2027-W01"


@settings(max_examples=300, deadline=None)
@given(policies(), st.lists(attempts, max_size=40))
def test_counting_only_accepted_sends_never_exceeds_any_cap(policy: Policy, tried: list[Attempt]) -> None:
    # Given a random policy and random attempts, When only sends no cap refuses are counted
    state, answers = replay(policy, tried)
    # Then no counter of any week is above its cap
    for usage in state.weeks.values():
        assert exceeded_caps(policy, usage) == []
        # and the counts are exact: week total = sends, days add up, channels add up
        assert usage.count("n_w") == len(usage.sends)
        assert sum(usage.count(f"n_d{d}") for d in range(1, 8)) == usage.count("n_w")
        assert sum(usage.count(f"n_w_ch_{c}") for c in CHANNELS) == usage.count("n_w")
    assert sum(len(u.sends) for u in state.weeks.values()) == answers.count(None)


@settings(max_examples=300, deadline=None)
@given(policies(), st.lists(attempts, max_size=30), attempts)
def test_a_refusal_names_a_cap_that_is_really_full(policy: Policy, tried: list[Attempt], probe: Attempt) -> None:
    # Given some history, When one more send is checked
    state, _ = replay(policy, tried)
    local_day, sent_at = when(probe)
    common: dict[str, Any] = {"channel": probe.channel, "topic": probe.topic, "campaign_id": probe.campaign_id}
    cap = first_refusing_cap(policy, state, local_day=local_day, sent_at=sent_at, resend_after=None, **common)
    usage = state.week(week_key(local_day))
    caps = {c.name: c for c in applicable_caps(policy, **common)}
    if cap is None:
        # Then a send that fits keeps every cap within its limit once counted
        after = state.with_send(send_id="probe", local_day=local_day, sent_at=sent_at, **common)
        assert exceeded_caps(policy, after.week(week_key(local_day))) == []
    else:
        # Then the named cap applies to this send and its counter is at (or above) its max
        assert cap in caps
        assert usage.count(cap_counter(caps[cap], local_day.isoweekday())) >= caps[cap].max
        # and counting more sends never turns a refusal into a fit (caps are monotone)
        more = state.with_send(send_id="other", local_day=local_day, sent_at=sent_at, **common)
        assert first_refusing_cap(policy, more, local_day=local_day, sent_at=sent_at, resend_after=None, **common)


@settings(max_examples=200, deadline=None)
@given(st.lists(attempts, min_size=1, max_size=20), st.data())
def test_giving_a_send_back_restores_the_week_exactly(tried: list[Attempt], data: st.DataObject) -> None:
    # Given a history counted without caps
    state, _ = replay(Policy.model_validate({"kind": "policy"}), tried)
    week = data.draw(st.sampled_from(sorted(state.weeks)))
    usage = state.weeks[week]
    send_id = data.draw(st.sampled_from(sorted(usage.sends)))
    entry = usage.sends[send_id]
    # When the send is given back
    after = usage.without_send(send_id)
    # Then it is as if it had never been counted: rebuild the week from the other sends
    rebuilt = WeekUsage(week)
    for other in sorted((e for e in usage.sends.values() if e.send_id != send_id), key=lambda e: e.sent_at):
        rebuilt = rebuilt.with_send(other)
    assert {k: v for k, v in after.counters.items() if v} == {k: v for k, v in rebuilt.counters.items() if v}
    assert after.sends == rebuilt.sends
    assert after.last_sent.get(entry.campaign_id) == rebuilt.last_sent.get(entry.campaign_id)
    # and giving it back twice changes nothing more
    assert after.without_send(send_id) == after


@settings(max_examples=100, deadline=None)
@given(st.lists(attempts, min_size=1, max_size=20), st.sampled_from(CHANNELS), st.data())
def test_a_channel_move_keeps_totals_and_moves_one_place(
    tried: list[Attempt], channel: str, data: st.DataObject
) -> None:
    state, _ = replay(Policy.model_validate({"kind": "policy"}), tried)
    usage = state.weeks[data.draw(st.sampled_from(sorted(state.weeks)))]
    send_id = data.draw(st.sampled_from(sorted(usage.sends)))
    old = usage.sends[send_id]
    # When the send falls back to another channel
    moved = usage.with_channel(send_id, channel)
    # Then every total, topic and campaign counter is unchanged and the channel counters shifted by one
    for name in set(usage.counters) | set(moved.counters):
        if "_ch_" not in name:
            assert moved.count(name) == usage.count(name)
    if channel != old.channel:
        assert moved.count(f"n_w_ch_{channel}") == usage.count(f"n_w_ch_{channel}") + 1
        assert moved.count(f"n_w_ch_{old.channel}") == usage.count(f"n_w_ch_{old.channel}") - 1
    assert moved.sends[send_id].channel == channel


def test_spec_policy_names_the_cap_that_refuses() -> None:
    # Given the SPEC policy (2/day, 5/week, 1 sms/day, 3 promo/week) and one sms promo today
    day, now = date(2026, 12, 2), datetime(2026, 12, 2, 3, tzinfo=UTC)
    state = UserCapState.empty(1).with_send(
        send_id="a", channel="sms", topic="promo", campaign_id="cart_recovery", local_day=day, sent_at=now
    )

    def check(channel: str, topic: str | None, on: date = day) -> str | None:
        common = {"campaign_id": "welcome", "sent_at": now, "resend_after": None}
        return first_refusing_cap(SPEC_POLICY, state, channel=channel, topic=topic, local_day=on, **common)  # type: ignore[arg-type]

    # Then a second sms is refused by day:sms, an email fits, and tomorrow's sms fits again
    assert check("sms", None) == "day:sms"
    assert check("email", "promo") is None
    assert check("sms", None, day + timedelta(days=1)) is None
    # When two more sends fill the day, Then the all-channel day cap refuses first (policy order)
    state = state.with_send(
        send_id="b", channel="email", topic="promo", campaign_id="welcome", local_day=day, sent_at=now
    )
    assert check("push", None) == "day"
    # When the week holds 3 promo sends, Then a promo send on another day is refused by the topic cap
    state = state.with_send(
        send_id="c", channel="push", topic="promo", campaign_id="vip", local_day=day + timedelta(days=1), sent_at=now
    )
    assert check("push", "promo", day + timedelta(days=2)) == "week:topic:promo"
    assert check("push", "cart", day + timedelta(days=2)) is None


def test_resend_after_is_exact_and_spans_weeks() -> None:
    # Given a send of a campaign on Sunday evening of one week
    sunday = date(2026, 12, 6)
    sent = datetime(2026, 12, 6, 11, tzinfo=UTC)
    state = UserCapState.empty(1).with_send(
        send_id="a", channel="sms", topic=None, campaign_id="cart", local_day=sunday, sent_at=sent
    )

    def check(at: datetime) -> str | None:
        return first_refusing_cap(
            SPEC_POLICY,
            state,
            channel="email",
            topic=None,
            campaign_id="cart",
            local_day=at.date(),
            sent_at=at,
            resend_after=timedelta(days=7),
        )

    # Then next Monday (another ISO week) is still too early, one second short too; exactly 7 days is fine
    assert check(sent + timedelta(days=1)) == RESEND_AFTER
    assert check(sent + timedelta(days=7, seconds=-1)) == RESEND_AFTER
    assert check(sent + timedelta(days=7)) is None
    assert not refuses_resend(None, sent, timedelta(days=7))
    assert not refuses_resend(1, sent, None)


def test_zero_cap_refuses_even_an_empty_week() -> None:
    policy = Policy.model_validate({"kind": "policy", "caps": [{"max": 0, "per": "week", "channel": "sms"}]})
    common = {"topic": None, "campaign_id": "c", "local_day": START, "sent_at": datetime(2026, 11, 30, tzinfo=UTC)}
    assert first_refusing_cap(policy, UserCapState.empty(1), channel="sms", resend_after=None, **common) == "week:sms"  # type: ignore[arg-type]
    assert first_refusing_cap(policy, UserCapState.empty(1), channel="email", resend_after=None, **common) is None  # type: ignore[arg-type]


def test_move_checks_only_the_new_channel_on_the_send_day() -> None:
    # Given one sms send on Wednesday that fills "1 push per day" is not yet used
    policy = Policy.model_validate(
        {"kind": "policy", "caps": [{"max": 1, "per": "day", "channel": "push"}, {"max": 1, "per": "day"}]}
    )
    entry = SendEntry("a", "sms", 3, "c", None, 0)
    usage = WeekUsage("2026-W49").with_send(entry)
    # Then moving it to push fits (the day total is already counted) and a second push send would not
    assert first_refusing_move_cap(policy, usage, entry, "push") is None
    pushed = usage.with_send(SendEntry("b", "push", 3, "c", None, 0))
    assert first_refusing_move_cap(policy, pushed, entry, "push") == "day:push"


@given(
    st.text(alphabet="abcdef0123456789", min_size=1, max_size=24),
    st.sampled_from(CHANNELS),
    st.integers(1, 7),
    st.sampled_from(CAMPAIGNS),
    st.sampled_from(TOPICS),
    st.integers(0, 2**33),
)
def test_send_entry_round_trips(  # noqa: PLR0917
    send_id: str, channel: str, weekday: int, campaign: str, topic: str | None, sent_at: int
) -> None:
    entry = SendEntry(send_id, channel, weekday, campaign, topic, sent_at)
    assert SendEntry.decode(send_id, entry.encode()) == entry
    moved = entry.moved_to("webhook").moved_to("email")
    assert moved.moved_from == (channel, "webhook")
    assert SendEntry.decode(send_id, moved.encode()) == moved


def test_counter_names_cover_total_channel_campaign_and_topic() -> None:
    names = counter_names(channel="sms", topic="promo", campaign_id="cart", weekday=3)
    assert set(names) == {
        "n_w",
        "n_w_ch_sms",
        "n_w_cp_cart",
        "n_w_tp_promo",
        "n_d3",
        "n_d3_ch_sms",
        "n_d3_cp_cart",
        "n_d3_tp_promo",
    }
    assert "n_w_tp_" not in "".join(counter_names(channel="sms", topic=None, campaign_id="cart", weekday=3))


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (ReserveResult("refused", "week:sms"), "capped:week:sms"),
        (ReserveResult("refused", RESEND_AFTER), "resend_after"),
        (ReserveResult("reserved"), None),
        (ReserveResult("already_reserved"), None),
    ],
)
def test_reason_codes(result: ReserveResult, reason: str | None) -> None:
    assert result.reason == reason
