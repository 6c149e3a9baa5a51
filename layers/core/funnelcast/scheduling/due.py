"""When a campaign schedule fires (pure): ``cron``, ``rate`` and ``at`` in a time zone with start/end.

The demo's simulated clock asks :func:`due_between`; :func:`schedule_request` gives EventBridge
Scheduler the same schedule, so the simulation and AWS agree. Rules, as EventBridge Scheduler:

* ``cron`` and ``at`` are read in the schedule's time zone (``schedule.timezone``, else the policy
  default passed as ``tz``). A local time skipped by a daylight-saving jump does not fire; a local
  time that happens twice fires once, at its first occurrence.
* ``rate(n unit)`` fires every fixed duration (a day is 24 hours) from ``start``. EventBridge starts
  a rate schedule without ``start`` when it is created; the simulation, which has no creation time,
  anchors it at the Unix epoch instead (``rate(1 hour)`` fires on the hour, UTC).
* ``start`` / ``end`` are local to the time zone: a date ``start`` is its local midnight
  (inclusive); a date ``end`` includes that whole local day; a datetime ``end`` is exclusive.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from funnelcast.rules.models import Schedule
from funnelcast.scheduling.cron import CronError, CronExpression

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
# A simulated clock never asks for more than this in one call; beyond it is a caller bug.
MAX_SPAN = timedelta(days=3660)


def zone(name: str | ZoneInfo) -> ZoneInfo:
    """A ``ZoneInfo`` from an IANA name, with a clear :class:`CronError` for an unknown one."""
    if isinstance(name, ZoneInfo):
        return name
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown IANA time zone {name!r}") from exc


def schedule_zone(schedule: Schedule, tz: str | ZoneInfo) -> ZoneInfo:
    """The zone a schedule is read in: its own ``timezone``, else ``tz`` (the policy default)."""
    return zone(schedule.timezone or tz)


def local_to_utc(local: datetime, tzinfo: ZoneInfo) -> datetime | None:
    """A naive local wall time as UTC; ``None`` when a DST jump skips it (first occurrence if doubled)."""
    aware = local.replace(tzinfo=tzinfo, fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(tzinfo).replace(tzinfo=None) != local:
        return None
    return utc


def _local_instant(value: datetime, tzinfo: ZoneInfo) -> datetime:
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    return value.replace(tzinfo=tzinfo).astimezone(UTC)


def schedule_bounds(schedule: Schedule, tz: str | ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """``(first allowed instant, first instant no longer allowed)`` in UTC; ``None`` = unbounded."""
    tzinfo = schedule_zone(schedule, tz)
    start: datetime | None = None
    end: datetime | None = None
    if isinstance(schedule.start, datetime):
        start = _local_instant(schedule.start, tzinfo)
    elif isinstance(schedule.start, date):
        start = _local_instant(datetime.combine(schedule.start, time()), tzinfo)
    if isinstance(schedule.end, datetime):
        end = _local_instant(schedule.end, tzinfo)
    elif isinstance(schedule.end, date):
        end = _local_instant(datetime.combine(schedule.end + timedelta(days=1), time()), tzinfo)
    return start, end


def rate_seconds(expression: str) -> int:
    """Seconds between fires of ``"5 minutes"`` / ``"1 hour"`` / ``"2 days"`` (with or without ``rate(...)``)."""
    inner = expression.strip()
    if inner.startswith("rate(") and inner.endswith(")"):
        inner = inner[5:-1]
    number, _, unit = inner.partition(" ")
    seconds = _RATE_UNITS.get(unit.rstrip("s"))
    if not number.isdigit() or int(number) < 1 or seconds is None:
        raise CronError(f"rate {expression!r}: expected '<n> minute(s)|hour(s)|day(s)'")
    return int(number) * seconds


def expression(schedule: Schedule) -> str:
    """The EventBridge Scheduler ``ScheduleExpression`` of a campaign schedule."""
    if schedule.cron is not None:
        return f"cron({schedule.cron})"
    if schedule.rate is not None:
        return f"rate({schedule.rate})"
    assert schedule.at is not None
    return f"at({schedule.at.replace(second=0, microsecond=0).strftime('%Y-%m-%dT%H:%M:%S')})"


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise CronError(f"{name} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def due_between(schedule: Schedule, tz: str | ZoneInfo, start_utc: datetime, end_utc: datetime) -> list[datetime]:
    """Every fire time of ``schedule`` in ``[start_utc, end_utc)``, ascending, as aware UTC datetimes.

    Consecutive windows of a simulated clock (``[t0, t1)``, ``[t1, t2)``) see each fire exactly once.
    """
    low, high = _utc(start_utc, "start_utc"), _utc(end_utc, "end_utc")
    if high - low > MAX_SPAN:
        raise CronError(f"due_between spans {high - low}; ask for at most {MAX_SPAN} at a time")
    first, stop = schedule_bounds(schedule, tz)
    if first is not None:
        low = max(low, first)
    if stop is not None:
        high = min(high, stop)
    if low >= high:
        return []
    tzinfo = schedule_zone(schedule, tz)
    if schedule.at is not None:
        fire = local_to_utc(schedule.at.replace(second=0, microsecond=0), tzinfo)
        return [fire] if fire is not None and low <= fire < high else []
    if schedule.rate is not None:
        return _rate_fires(rate_seconds(schedule.rate), first or EPOCH, low, high)
    assert schedule.cron is not None
    return _cron_fires(CronExpression.parse(schedule.cron), tzinfo, low, high)


def _rate_fires(step: int, anchor: datetime, low: datetime, high: datetime) -> list[datetime]:
    offset = (low - anchor).total_seconds()
    k = max(0, -(-int(offset) // step))  # ceil division: the first fire at or after low
    fires: list[datetime] = []
    moment = anchor + timedelta(seconds=k * step)
    while moment < high:
        if moment >= low:
            fires.append(moment)
        moment += timedelta(seconds=step)
    return fires


def _cron_fires(cron: CronExpression, tzinfo: ZoneInfo, low: datetime, high: datetime) -> list[datetime]:
    day = low.astimezone(tzinfo).date() - timedelta(days=1)  # DST edges: look one day around
    last_day = high.astimezone(tzinfo).date() + timedelta(days=1)
    times = cron.times()
    fires: list[datetime] = []
    while day <= last_day:
        if cron.matches_day(day):
            for hour, minute in times:
                fire = local_to_utc(datetime.combine(day, time(hour, minute)), tzinfo)
                if fire is not None and low <= fire < high:
                    fires.append(fire)
        day += timedelta(days=1)
    return sorted(set(fires))


def next_fire_after(
    schedule: Schedule, tz: str | ZoneInfo, after_utc: datetime, horizon: timedelta = timedelta(days=366)
) -> datetime | None:
    """The first fire strictly after ``after_utc`` within ``horizon`` (``None`` if there is none)."""
    start = _utc(after_utc, "after_utc") + timedelta(seconds=1)
    fires = due_between(schedule, tz, start, start + min(horizon, MAX_SPAN))
    return fires[0] if fires else None
