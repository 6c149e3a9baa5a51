"""EventBridge cron / rate / at evaluation: hand-checked dates, hypothesis properties, bad expressions."""

from __future__ import annotations

import calendar
import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from funnelcast.rules.models import Schedule
from funnelcast.scheduling import CronError, CronExpression, due_between, next_fire_after, schedule_bounds
from funnelcast.scheduling.cron import eventbridge_weekday
from funnelcast.scheduling.due import expression, rate_seconds

SEOUL = ZoneInfo("Asia/Seoul")


def schedule(**fields: Any) -> Schedule:
    return Schedule.model_validate(fields)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc,arg-type]


def local_days(cron: str, start: date, days: int, tz: str = "Asia/Seoul") -> list[date]:
    """Local calendar days on which ``cron`` fires between ``start`` and ``start + days``."""
    zone = ZoneInfo(tz)
    begin = datetime.combine(start, datetime.min.time(), zone).astimezone(UTC)
    fires = due_between(schedule(cron=cron, timezone=tz), "UTC", begin, begin + timedelta(days=days))
    return sorted({f.astimezone(zone).date() for f in fires})


@pytest.mark.parametrize(
    ("cron", "start", "days", "expected"),
    [
        # every day at 10:00 Seoul = 01:00 UTC
        ("0 10 * * ? *", date(2026, 12, 1), 3, [date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3)]),
        # Mondays (2 = MON in EventBridge, 1 = SUN)
        ("0 11 ? * MON *", date(2026, 12, 1), 14, [date(2026, 12, 7), date(2026, 12, 14)]),
        ("0 11 ? * 2 *", date(2026, 12, 1), 14, [date(2026, 12, 7), date(2026, 12, 14)]),
        ("0 9 ? * SUN *", date(2026, 12, 1), 7, [date(2026, 12, 6)]),
        # weekdays, names as a range
        ("0 9 ? * MON-FRI *", date(2026, 12, 4), 4, [date(2026, 12, 4), date(2026, 12, 7)]),
        # L: last day of the month (February of a non-leap and a leap year)
        ("0 9 L * ? *", date(2027, 2, 1), 40, [date(2027, 2, 28)]),
        ("0 9 L * ? *", date(2028, 2, 1), 40, [date(2028, 2, 29)]),
        # L-2: two days before the last
        ("0 9 L-2 * ? *", date(2026, 12, 1), 31, [date(2026, 12, 29)]),
        # 1W: weekday nearest the 1st without leaving the month (2026-08-01 is a Saturday -> Monday 3rd)
        ("0 9 1W * ? *", date(2026, 8, 1), 31, [date(2026, 8, 3)]),
        # 15W: 2026-11-15 is a Sunday -> Monday 16th; 2026-08-15 is a Saturday -> Friday 14th
        ("0 9 15W * ? *", date(2026, 11, 1), 30, [date(2026, 11, 16)]),
        ("0 9 15W * ? *", date(2026, 8, 1), 31, [date(2026, 8, 14)]),
        # 31W when the 31st is a Sunday (2027-01-31) -> Friday 29th
        ("0 9 31W * ? *", date(2027, 1, 1), 31, [date(2027, 1, 29)]),
        # LW: last weekday (2027-01-31 is a Sunday -> Friday 29th)
        ("0 9 LW * ? *", date(2027, 1, 1), 31, [date(2027, 1, 29)]),
        # 6#3: third Friday; 2#1: first Monday
        ("0 9 ? * 6#3 *", date(2026, 12, 1), 31, [date(2026, 12, 18)]),
        ("0 9 ? * MON#1 *", date(2026, 12, 1), 31, [date(2026, 12, 7)]),
        # 6L: last Friday of the month; L alone: Saturday (last day of the week)
        ("0 9 ? * 6L *", date(2026, 12, 1), 31, [date(2026, 12, 25)]),
        ("0 9 ? * L *", date(2026, 12, 1), 14, [date(2026, 12, 5), date(2026, 12, 12)]),
        # months by name, lists, year ranges
        ("0 9 1 JAN,JUL ? 2027", date(2026, 12, 1), 400, [date(2027, 1, 1), date(2027, 7, 1)]),
        ("0 9 1 * ? 2028-2029", date(2027, 12, 1), 60, [date(2028, 1, 1)]),
        # steps: every 10th day from the 5th
        ("0 9 5/10 * ? *", date(2026, 12, 1), 31, [date(2026, 12, 5), date(2026, 12, 15), date(2026, 12, 25)]),
    ],
)
def test_cron_days_checked_by_hand(cron: str, start: date, days: int, expected: list[date]) -> None:
    assert local_days(cron, start, days) == expected


def test_minutes_hours_and_time_zone() -> None:
    # Given "every 20 minutes from 5 past, 09:xx and 17:xx" in Seoul
    fires = due_between(
        schedule(cron="5/20 9,17 * * ? *", timezone="Asia/Seoul"), "UTC", utc(2026, 12, 1), utc(2026, 12, 2)
    )
    # Then six fires at 09:05/25/45 and 17:05/25/45 local, i.e. 00:xx and 08:xx UTC
    assert [f.strftime("%H:%M") for f in fires] == ["00:05", "00:25", "00:45", "08:05", "08:25", "08:45"]
    # and a schedule without its own zone takes the policy default passed in
    assert due_between(schedule(cron="0 10 * * ? *"), "Asia/Seoul", utc(2026, 12, 1), utc(2026, 12, 2)) == [
        utc(2026, 12, 1, 1)
    ]


def test_daylight_saving_like_eventbridge_scheduler() -> None:
    # Given 02:30 every day in New York: 2026-03-08 02:30 does not exist (spring forward)
    spring = due_between(
        schedule(cron="30 2 * * ? *", timezone="America/New_York"), "UTC", utc(2026, 3, 7), utc(2026, 3, 10)
    )
    # Then that day is skipped, not moved
    assert [f.astimezone(ZoneInfo("America/New_York")).date() for f in spring] == [date(2026, 3, 7), date(2026, 3, 9)]
    # Given 01:30 on 2026-11-01, which happens twice (fall back), Then it fires once, the first time (EDT)
    fall = due_between(
        schedule(cron="30 1 1 NOV ? *", timezone="America/New_York"), "UTC", utc(2026, 10, 31), utc(2026, 11, 3)
    )
    assert fall == [utc(2026, 11, 1, 5, 30)]


def test_rate_runs_from_start_or_the_epoch() -> None:
    # Given rate(6 hours) without a start, Then it fires on UTC multiples of 6 hours
    fires = due_between(schedule(rate="6 hours"), "Asia/Seoul", utc(2026, 12, 1, 1), utc(2026, 12, 2, 1))
    assert [f.hour for f in fires] == [6, 12, 18, 0]
    # Given a start (local date), Then it counts from that local midnight and never before it
    started = schedule(rate="90 minutes", timezone="Asia/Seoul", start=date(2026, 12, 2))
    fires = due_between(started, "UTC", utc(2026, 11, 30), utc(2026, 12, 1, 18))
    assert fires == [utc(2026, 12, 1, 15), utc(2026, 12, 1, 16, 30)]
    assert rate_seconds("rate(1 day)") == 86400


def test_at_fires_once_at_local_time() -> None:
    one_time = schedule(at=datetime(2026, 12, 24, 9, 0), timezone="Asia/Seoul")
    assert due_between(one_time, "UTC", utc(2026, 12, 1), utc(2027, 1, 1)) == [utc(2026, 12, 24, 0)]
    assert due_between(one_time, "UTC", utc(2026, 12, 24, 0, 1), utc(2027, 1, 1)) == []
    assert expression(one_time) == "at(2026-12-24T09:00:00)"


def test_start_and_end_are_local_and_end_date_is_inclusive() -> None:
    # Given a campaign that runs from Dec 2 to Dec 3 (Seoul dates)
    bounded = schedule(cron="0 10 * * ? *", timezone="Asia/Seoul", start=date(2026, 12, 2), end=date(2026, 12, 3))
    # Then it fires on both days and on no other
    fires = due_between(bounded, "UTC", utc(2026, 11, 25), utc(2026, 12, 10))
    assert fires == [utc(2026, 12, 2, 1), utc(2026, 12, 3, 1)]
    assert schedule_bounds(bounded, "UTC") == (utc(2026, 12, 1, 15), utc(2026, 12, 3, 15))
    # and a datetime end is exclusive
    until = schedule(cron="0 10 * * ? *", timezone="Asia/Seoul", end=datetime(2026, 12, 3, 10, 0))
    assert due_between(until, "UTC", utc(2026, 12, 2), utc(2026, 12, 5)) == [utc(2026, 12, 2, 1)]


def test_next_fire_after_is_strictly_after() -> None:
    daily = schedule(cron="0 10 * * ? *", timezone="Asia/Seoul")
    assert next_fire_after(daily, "UTC", utc(2026, 12, 1, 1)) == utc(2026, 12, 2, 1)
    assert next_fire_after(daily, "UTC", utc(2026, 12, 1, 0, 59)) == utc(2026, 12, 1, 1)
    ended = schedule(cron="0 10 * * ? *", timezone="Asia/Seoul", end=date(2026, 12, 1))
    assert next_fire_after(ended, "UTC", utc(2026, 12, 1, 2)) is None


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 10 * * *", "six fields"),
        ("0 10 * * * *", "exactly one of day-of-month and day-of-week"),
        ("0 10 ? * ? *", "exactly one of day-of-month and day-of-week"),
        ("60 10 * * ? *", "minute: 60"),
        ("0 24 * * ? *", "hour: 24"),
        ("0 10 32 * ? *", "day-of-month: 32"),
        ("0 10 * 13 ? *", "month: 13"),
        ("0 10 * FOO ? *", "month: 'FOO'"),
        ("0 10 ? * 8 *", "day-of-week: 8"),
        ("0 10 ? * 6#6 *", "6#3"),
        ("0 10 ? * 6#3,2 *", "one expression"),
        ("0 10 5X * ? *", "day-of-month"),
        ("0 10 * * ? 2300", "year: 2300"),
        ("0 10-5 * * ? *", "backwards"),
        ("0/0 10 * * ? *", "step"),
        ("? 10 * * ? *", "'?' is only"),
    ],
)
def test_bad_cron_names_the_field(cron: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("?", r"\?").replace("(", r"\(")):
        CronExpression.parse(cron)


# ---------------------------------------------------------------- hypothesis

items = st.one_of(
    st.tuples(st.just("one"), st.integers(0, 59), st.just(0), st.just(1)),
    st.tuples(st.just("range"), st.integers(0, 59), st.integers(0, 59), st.integers(1, 20)),
    st.tuples(st.just("from"), st.integers(0, 59), st.just(0), st.integers(1, 30)),
    st.tuples(st.just("all"), st.just(0), st.just(0), st.integers(1, 30)),
)


def field_text(parts: list[tuple[str, int, int, int]], high: int) -> tuple[str, set[int]]:
    """Render a minute/hour field and compute, independently, the values it means."""
    texts, values = [], set()
    for kind, first, second, step in parts:
        a, b = min(first, high), min(second, high)
        if kind == "one":
            texts.append(str(a))
            values.add(a)
        elif kind == "range":
            lo, hi = min(a, b), max(a, b)
            texts.append(f"{lo}-{hi}/{step}")
            values |= set(range(lo, hi + 1, step))
        elif kind == "from":
            texts.append(f"{a}/{step}")
            values |= set(range(a, high + 1, step))
        else:
            texts.append(f"*/{step}")
            values |= set(range(0, high + 1, step))
    return ",".join(texts), values


@settings(max_examples=150, deadline=None)
@given(st.lists(items, min_size=1, max_size=3), st.lists(items, min_size=1, max_size=3))
def test_plain_fields_mean_what_they_say(minutes: list[Any], hours: list[Any]) -> None:
    minute_text, minute_values = field_text(minutes, 59)
    hour_text, hour_values = field_text(hours, 23)
    cron = CronExpression.parse(f"{minute_text} {hour_text} * * ? *")
    assert cron.minutes == minute_values
    assert cron.hours == hour_values


day_crons = st.sampled_from(
    [
        "0 9 * * ? *",
        "30 8,20 ? * MON-FRI *",
        "0 12 L * ? *",
        "15 7 15W * ? *",
        "0 0 LW * ? *",
        "0 18 ? * 6L *",
        "45 9 ? * 3#2 *",
        "*/30 */6 1-10/3 * ? *",
        "0 9 ? * SAT,SUN *",
    ]
)
zones = st.sampled_from(["Asia/Seoul", "UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"])
instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@settings(max_examples=150, deadline=None)
@given(day_crons, zones, instants, st.integers(1, 60 * 24 * 40), st.integers(0, 60 * 24 * 40))
def test_windows_split_anywhere_see_each_fire_once(cron: str, tz: str, start: datetime, span: int, cut: int) -> None:
    # Given a window [start, end) and any cut inside it
    end = start + timedelta(minutes=span)
    middle = start + timedelta(minutes=min(cut, span))
    rule = schedule(cron=cron, timezone=tz)
    whole = due_between(rule, "UTC", start, end)
    # Then the two halves together are exactly the whole (a simulated clock never misses or repeats)
    assert due_between(rule, "UTC", start, middle) + due_between(rule, "UTC", middle, end) == whole
    # and every fire is inside, ascending, unique, on a whole minute, and matches the fields locally
    assert all(start <= f < end and f.second == 0 for f in whole)
    assert whole == sorted(set(whole))
    parsed = CronExpression.parse(cron)
    for fire in whole:
        local = fire.astimezone(ZoneInfo(tz))
        assert local.minute in parsed.minutes
        assert local.hour in parsed.hours
        assert parsed.matches_day(local.date())


@settings(max_examples=60, deadline=None)
@given(day_crons, instants)
def test_every_matching_local_minute_fires(cron: str, start: datetime) -> None:
    # Given a zone without DST, When every minute of two days is checked by brute force
    parsed = CronExpression.parse(cron)
    expected = []
    moment = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = moment + timedelta(days=2)
    while moment < end:
        local = moment.astimezone(SEOUL)
        if local.minute in parsed.minutes and local.hour in parsed.hours and parsed.matches_day(local.date()):
            expected.append(moment)
        moment += timedelta(minutes=1)
    # Then due_between finds exactly those minutes
    first = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    assert due_between(schedule(cron=cron, timezone="Asia/Seoul"), "UTC", first, end) == expected


@given(st.integers(2000, 2190), st.integers(1, 12), st.integers(1, 7), st.integers(1, 5))
def test_last_and_nth_weekday_match_the_calendar(year: int, month: int, weekday: int, nth: int) -> None:
    days = [date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
    same = [d for d in days if eventbridge_weekday(d) == weekday]
    last = CronExpression.parse(f"0 0 ? * {weekday}L *")
    assert [d for d in days if last.matches_day(d)] == [same[-1]]
    nth_rule = CronExpression.parse(f"0 0 ? * {weekday}#{nth} *")
    assert [d for d in days if nth_rule.matches_day(d)] == ([same[nth - 1]] if nth <= len(same) else [])


@given(st.integers(2000, 2190), st.integers(1, 12), st.integers(1, 31))
def test_nearest_weekday_stays_in_the_month_and_close(year: int, month: int, target: int) -> None:
    last = calendar.monthrange(year, month)[1]
    assume(target <= last)
    rule = CronExpression.parse(f"0 0 {target}W * ? *")
    matched = [date(year, month, d) for d in range(1, last + 1) if rule.matches_day(date(year, month, d))]
    assert len(matched) == 1
    chosen = matched[0]
    assert chosen.isoweekday() <= 5
    assert abs(chosen.day - target) <= 2
    if date(year, month, target).isoweekday() <= 5:
        assert chosen.day == target


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["1 minute", "7 minutes", "1 hour", "5 hours", "1 day", "3 days"]), instants, instants)
def test_rate_fires_are_evenly_spaced(rate: str, start: datetime, other: datetime) -> None:
    low, high = sorted((start, other))
    high = min(high, low + timedelta(days=20))
    fires = due_between(schedule(rate=rate), "UTC", low, high)
    step = timedelta(seconds=rate_seconds(rate))
    assert all(b - a == step for a, b in itertools.pairwise(fires))
    assert all(low <= f < high for f in fires)
    assert not fires or fires[0] - low < step
