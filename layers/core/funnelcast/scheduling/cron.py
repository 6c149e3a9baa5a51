"""EventBridge Scheduler ``cron(...)`` expressions, parsed and matched (pure).

Six fields: ``minute hour day-of-month month day-of-week year``; exactly one of day-of-month and
day-of-week is ``?``. Day-of-week runs 1-7 = SUN-SAT (EventBridge, not Unix cron). Supported,
as documented by AWS: ``, - * / ?`` everywhere they are allowed, names (``JAN``-``DEC``,
``SUN``-``SAT``), ``L`` (last day of the month; alone in day-of-week: Saturday, the last day of the
week; ``6L``: the last Friday of the month), ``L-3`` (three days before the last), ``15W`` (the
weekday nearest the 15th, never leaving the month), ``LW`` (the last weekday) and ``6#3`` (the
third Friday; ``#`` stands alone in its field).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

from funnelcast.errors import FunnelcastError

MONTHS = {
    "JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
    "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12,
}  # fmt: skip
WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week", "year")
_BOUNDS = {"minute": (0, 59), "hour": (0, 23), "day-of-month": (1, 31), "month": (1, 12), "day-of-week": (1, 7)}
YEAR_RANGE = (1970, 2199)
_STEP_PART = re.compile(r"^(?P<base>[^/]+)(?:/(?P<step>\d+))?$")


class CronError(FunnelcastError):
    """A cron expression EventBridge would not accept; the message names the field and the part."""


def eventbridge_weekday(day: date) -> int:
    """EventBridge day-of-week of ``day``: Sunday = 1 ... Saturday = 7."""
    return day.isoweekday() % 7 + 1


def _number(text: str, field: str, names: dict[str, int] | None = None) -> int:
    upper = text.upper()
    if names is not None and upper in names:
        return names[upper]
    if not text.isdigit():
        raise CronError(f"cron {field}: {text!r} is not a number{' or a name' if names else ''}")
    return int(text)


def _values(part: str, field: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    """One comma-separated part of a plain field: ``*``, ``n``, ``a-b``, each with an optional ``/step``."""
    match = _STEP_PART.match(part)
    if match is None:
        raise CronError(f"cron {field}: cannot read {part!r}")
    base, step_text = match["base"], match["step"]
    step = int(step_text) if step_text is not None else 1
    if step < 1:
        raise CronError(f"cron {field}: step in {part!r} must be at least 1")
    if base == "*":
        first, last = low, high
    elif "-" in base:
        start, _, end = base.partition("-")
        first, last = _number(start, field, names), _number(end, field, names)
    else:
        first = _number(base, field, names)
        last = high if step_text is not None else first  # "5/15": from 5 to the end, every 15
    for value in (first, last):
        if not low <= value <= high:
            raise CronError(f"cron {field}: {value} in {part!r} is out of range {low}-{high}")
    if first > last:
        raise CronError(f"cron {field}: range {part!r} runs backwards")
    return set(range(first, last + 1, step))


def _plain_field(text: str, field: str, names: dict[str, int] | None = None) -> frozenset[int]:
    low, high = YEAR_RANGE if field == "year" else _BOUNDS[field]
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"cron {field}: empty item in {text!r}")
        values |= _values(part, field, low, high, names)
    return frozenset(values)


@dataclass(frozen=True)
class DayOfMonthRule:
    """Day-of-month field: plain days plus the special forms ``L``, ``L-n``, ``nW``, ``LW``."""

    days: frozenset[int] = frozenset()
    last_offsets: frozenset[int] = frozenset()  # "L" -> 0, "L-3" -> 3
    nearest_weekday: frozenset[int] = frozenset()  # "15W" -> 15
    last_weekday: bool = False  # "LW"

    def matches(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        if day.day in self.days or any(day.day == last - offset for offset in self.last_offsets):
            return True
        if self.last_weekday and day == _weekday_on_or_before(date(day.year, day.month, last)):
            return True
        return any(day == _nearest_weekday(day.year, day.month, target) for target in self.nearest_weekday)


@dataclass(frozen=True)
class DayOfWeekRule:
    """Day-of-week field: plain weekdays (1 = SUN), ``nL`` (last n of the month), ``n#k`` (k-th n)."""

    weekdays: frozenset[int] = frozenset()
    last_of_month: frozenset[int] = frozenset()
    nth: tuple[int, int] | None = None

    def matches(self, day: date) -> bool:
        weekday = eventbridge_weekday(day)
        if weekday in self.weekdays:
            return True
        last = calendar.monthrange(day.year, day.month)[1]
        if weekday in self.last_of_month and day.day + 7 > last:
            return True
        return self.nth is not None and weekday == self.nth[0] and (day.day - 1) // 7 + 1 == self.nth[1]


def _weekday_on_or_before(day: date) -> date:
    while day.isoweekday() > 5:
        day = day.replace(day=day.day - 1)
    return day


def _nearest_weekday(year: int, month: int, target: int) -> date | None:
    """Quartz ``W``: the weekday nearest ``target`` in the same month (``None`` if the month is shorter)."""
    last = calendar.monthrange(year, month)[1]
    if target > last:
        return None
    day = date(year, month, target)
    weekday = day.isoweekday()
    if weekday == 6:  # Saturday -> Friday, or Monday when Friday is in the previous month
        return day.replace(day=target - 1) if target > 1 else day.replace(day=target + 2)
    if weekday == 7:  # Sunday -> Monday, or Friday when Monday is in the next month
        return day.replace(day=target + 1) if target < last else day.replace(day=target - 2)
    return day


def _day_of_month(text: str) -> DayOfMonthRule | None:
    if text == "?":
        return None
    days: set[int] = set()
    offsets: set[int] = set()
    nearest: set[int] = set()
    last_weekday = False
    for part in text.split(","):
        upper = part.upper()
        if upper == "LW":
            last_weekday = True
        elif upper == "L":
            offsets.add(0)
        elif re.fullmatch(r"L-\d+", upper):
            offset = int(upper[2:])
            if offset > 30:
                raise CronError(f"cron day-of-month: {part!r} reaches before the first day")
            offsets.add(offset)
        elif re.fullmatch(r"\d+W", upper):
            target = int(upper[:-1])
            if not 1 <= target <= 31:
                raise CronError(f"cron day-of-month: {part!r} is out of range 1-31")
            nearest.add(target)
        elif "L" in upper or "W" in upper or "#" in upper:
            raise CronError(f"cron day-of-month: cannot read {part!r} (use L, L-n, nW or LW)")
        else:
            days |= _values(part, "day-of-month", 1, 31)
    return DayOfMonthRule(frozenset(days), frozenset(offsets), frozenset(nearest), last_weekday)


def _day_of_week(text: str) -> DayOfWeekRule | None:
    if text == "?":
        return None
    if "#" in text:
        if "," in text:
            raise CronError(f"cron day-of-week: {text!r}: '#' allows one expression in the field only")
        weekday_text, _, nth_text = text.partition("#")
        weekday = _number(weekday_text, "day-of-week", WEEKDAYS)
        if not 1 <= weekday <= 7 or not nth_text.isdigit() or not 1 <= int(nth_text) <= 5:
            raise CronError(f"cron day-of-week: {text!r} must look like 6#3 (weekday 1-7, instance 1-5)")
        return DayOfWeekRule(nth=(weekday, int(nth_text)))
    weekdays: set[int] = set()
    last: set[int] = set()
    for part in text.split(","):
        upper = part.upper()
        if upper == "L":
            weekdays.add(7)  # alone, L is the last day of the week: Saturday
        elif upper.endswith("L"):
            weekday = _number(part[:-1], "day-of-week", WEEKDAYS)
            if not 1 <= weekday <= 7:
                raise CronError(f"cron day-of-week: {part!r} is out of range 1-7")
            last.add(weekday)
        else:
            weekdays |= _values(part, "day-of-week", 1, 7, WEEKDAYS)
    return DayOfWeekRule(frozenset(weekdays), frozenset(last))


@dataclass(frozen=True)
class CronExpression:
    """A parsed EventBridge cron expression; ``matches_day`` and ``times`` drive evaluation."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: DayOfMonthRule | None
    months: frozenset[int]
    day_of_week: DayOfWeekRule | None
    years: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Parse the six fields (with or without the surrounding ``cron(...)``)."""
        inner = text.strip()
        if inner.startswith("cron(") and inner.endswith(")"):
            inner = inner[5:-1]
        fields = inner.split()
        if len(fields) != 6:
            raise CronError(f"cron needs six fields ({' '.join(FIELD_NAMES)}), got {len(fields)} in {text!r}")
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise CronError(f"cron {text!r}: exactly one of day-of-month and day-of-week must be '?'")
        for name, value in (("minute", minute), ("hour", hour), ("month", month), ("year", year)):
            if "?" in value:
                raise CronError(f"cron {name}: '?' is only for day-of-month or day-of-week")
        return cls(
            text=inner,
            minutes=_plain_field(minute, "minute"),
            hours=_plain_field(hour, "hour"),
            day_of_month=_day_of_month(dom),
            months=_plain_field(month, "month", MONTHS),
            day_of_week=_day_of_week(dow),
            years=_plain_field(year, "year"),
        )

    def matches_day(self, day: date) -> bool:
        if day.year not in self.years or day.month not in self.months:
            return False
        if self.day_of_month is not None:
            return self.day_of_month.matches(day)
        assert self.day_of_week is not None
        return self.day_of_week.matches(day)

    def times(self) -> list[tuple[int, int]]:
        """``(hour, minute)`` pairs of a matching day, in order."""
        return [(hour, minute) for hour in sorted(self.hours) for minute in sorted(self.minutes)]
