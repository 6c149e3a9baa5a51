"""EventBridge Scheduler adapter: one schedule per campaign, and one-time schedules for waiting batches.

The scheduler client is passed in (or the shared lazy one); AWS errors become
:class:`funnelcast.errors.SchedulerError`. Nothing here imports boto3.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from funnelcast.aws.clients import error_code
from funnelcast.errors import ConfigurationError, SchedulerError
from funnelcast.rules.models import Campaign, RuleSet
from funnelcast.scheduling.due import EPOCH, expression, local_to_utc, rate_seconds, schedule_bounds, schedule_zone

CAMPAIGN_PREFIX = "campaign-"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
_NAME_LIMIT = 64
_ONE_MINUTE = timedelta(minutes=1)
_NAME_OK = re.compile(r"[^0-9A-Za-z_.\-]")


def _fit_name(name: str) -> str:
    """A Scheduler-legal name (``[0-9A-Za-z_.-]{1,64}``); long ones keep a prefix and a hash."""
    clean = _NAME_OK.sub("-", name)
    if len(clean) <= _NAME_LIMIT and clean == name:
        return clean
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{clean[: _NAME_LIMIT - len(digest) - 1]}-{digest}"


def campaign_schedule_name(campaign_id: str) -> str:
    """``campaign-<id>`` (ids longer than 55 characters end in a short hash to fit 64)."""
    return _fit_name(f"{CAMPAIGN_PREFIX}{campaign_id}")


def campaign_input(campaign_id: str) -> str:
    """The target input: Scheduler fills in the scheduled time of each invocation."""
    return json.dumps({"campaign_id": campaign_id, "scheduled_time": SCHEDULED_TIME}, separators=(",", ":"))


@dataclass(frozen=True)
class SyncResult:
    """Schedule names per action taken by :func:`sync_schedules`."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # campaigns whose schedule can never fire again


def desired_schedule(
    campaign: Campaign, default_timezone: str, target_arn: str, role_arn: str, now: datetime | None = None
) -> dict[str, Any] | None:
    """The ``CreateSchedule`` arguments for ``campaign`` (without name and group), ``None`` if expired.

    A ``cron`` start in the past is left out (Scheduler refuses start dates more than 5 minutes
    ago). A ``rate`` schedule whose start is past or absent gets the first fire after ``now`` on
    its grid (start, else the Unix epoch) as ``StartDate``, so AWS fires exactly when
    :func:`funnelcast.scheduling.due.due_between` (the demo's clock) says - not "from creation time".
    """
    schedule = campaign.schedule
    tzinfo = schedule_zone(schedule, default_timezone)
    start, end = schedule_bounds(schedule, default_timezone)
    if now is not None:
        if end is not None and end <= now:
            return None
        if schedule.at is not None:
            fire = local_to_utc(schedule.at.replace(second=0, microsecond=0), tzinfo)
            if fire is None or fire < now:
                return None
        grid = rate_grid(campaign, default_timezone, now)
        if grid is not None:
            anchor, step = grid
            start = anchor + timedelta(seconds=((now - anchor) // timedelta(seconds=step) + 1) * step)
        elif start is not None and start <= now:
            start = None
    request: dict[str, Any] = {
        "ScheduleExpression": expression(schedule),
        "ScheduleExpressionTimezone": tzinfo.key,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {"Arn": target_arn, "RoleArn": role_arn, "Input": campaign_input(campaign.id)},
        "State": "ENABLED",
        "Description": f"funnelcast campaign {campaign.id} (priority {campaign.priority})",
    }
    if start is not None:
        request["StartDate"] = start
    if end is not None:
        request["EndDate"] = end
    return request


def rate_grid(campaign: Campaign, default_timezone: str, now: datetime | None) -> tuple[datetime, int] | None:
    """``(anchor, seconds)`` of a rate schedule whose StartDate sync computes (start past or absent)."""
    schedule = campaign.schedule
    if schedule.rate is None or now is None:
        return None
    start, _ = schedule_bounds(schedule, default_timezone)
    if start is not None and start > now:
        return None
    return (start or EPOCH), rate_seconds(schedule.rate)


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def _same(
    existing: Mapping[str, Any], wanted: Mapping[str, Any], now: datetime | None, grid: tuple[datetime, int] | None
) -> bool:
    def start_of(request: Mapping[str, Any]) -> datetime | None:
        start = _as_utc(request.get("StartDate"))
        return None if start is not None and now is not None and start <= now else start

    if grid is not None:  # any start on the rate's grid fires at the same times
        anchor, step = grid
        current = _as_utc(existing.get("StartDate"))
        same_start = current is not None and (current - anchor).total_seconds() % step == 0
    else:
        same_start = start_of(existing) == start_of(wanted)

    target = existing.get("Target", {})
    return (
        existing.get("ScheduleExpression") == wanted["ScheduleExpression"]
        and existing.get("ScheduleExpressionTimezone") == wanted["ScheduleExpressionTimezone"]
        and existing.get("State") == wanted["State"]
        and existing.get("Description") == wanted["Description"]
        and target.get("Arn") == wanted["Target"]["Arn"]
        and target.get("RoleArn") == wanted["Target"]["RoleArn"]
        and target.get("Input") == wanted["Target"]["Input"]
        and same_start
        and _as_utc(existing.get("EndDate")) == _as_utc(wanted.get("EndDate"))
    )


def _call(client: Any, operation: str, **request: Any) -> dict[str, Any]:
    try:
        response: dict[str, Any] = getattr(client, operation)(**request)
    except Exception as exc:
        code = error_code(exc) or type(exc).__name__
        name = request.get("Name", request.get("GroupName", ""))
        raise SchedulerError(f"EventBridge Scheduler {operation} {name} failed ({code}): {exc}") from exc
    return response


def _existing_campaign_schedules(client: Any, group: str) -> list[str]:
    names: list[str] = []
    request: dict[str, Any] = {"GroupName": group, "NamePrefix": CAMPAIGN_PREFIX}
    while True:
        page = _call(client, "list_schedules", **request)
        names += [s["Name"] for s in page.get("Schedules", []) if s["Name"].startswith(CAMPAIGN_PREFIX)]
        token = page.get("NextToken")
        if not token:
            return names
        request["NextToken"] = token


def sync_schedules(
    ruleset: RuleSet,
    scheduler_client: Any,
    group: str,
    target_arn: str,
    role_arn: str,
    *,
    now: datetime | None = None,
) -> SyncResult:
    """Make the group's ``campaign-*`` schedules match ``ruleset``: create, update, delete.

    Parameters
    ----------
    ruleset
        The rule set just activated; its policy's ``default_timezone`` applies where a schedule has none.
    scheduler_client
        A boto3 ``scheduler`` client.
    group
        The stack's schedule group (``SCHEDULE_GROUP``); other groups are never touched.
    target_arn, role_arn
        The planner function and the role Scheduler assumes to invoke it.
    now
        Activation time: schedules that can no longer fire (``at`` or ``end`` in the past) are
        deleted / not created and listed as ``expired``; a past ``start`` is left out.
    """
    if not target_arn or not role_arn:
        raise ConfigurationError("schedule sync needs PLANNER_FUNCTION_ARN and SCHEDULER_ROLE_ARN")
    existing = set(_existing_campaign_schedules(scheduler_client, group))
    result = SyncResult()
    wanted_names: set[str] = set()
    for campaign in sorted(ruleset.campaigns, key=lambda c: c.id):
        name = campaign_schedule_name(campaign.id)
        wanted = desired_schedule(campaign, ruleset.policy.default_timezone, target_arn, role_arn, now)
        if wanted is None:
            result.expired.append(name)
            continue
        wanted_names.add(name)
        if name not in existing:
            _call(scheduler_client, "create_schedule", Name=name, GroupName=group, **wanted)
            result.created.append(name)
            continue
        current = _call(scheduler_client, "get_schedule", Name=name, GroupName=group)
        if _same(current, wanted, now, rate_grid(campaign, ruleset.policy.default_timezone, now)):
            result.unchanged.append(name)
        else:
            _call(scheduler_client, "update_schedule", Name=name, GroupName=group, **wanted)
            result.updated.append(name)
    for name in sorted(existing - wanted_names):
        _call(scheduler_client, "delete_schedule", Name=name, GroupName=group)
        result.deleted.append(name)
    return result


def schedule_sync_callback(
    settings: Any, *, scheduler_client: Any = None, clock: Callable[[], datetime] | None = None
) -> Callable[[RuleSet], SyncResult]:
    """An ``on_activated`` callback for :func:`funnelcast.activation.activate_rules`.

    Reads ``schedule_group``, ``planner_function_arn`` and ``scheduler_role_arn`` from ``settings``;
    the client is created on first use (the shared lazy client) unless one is given.
    """
    settings.require("planner_function_arn", "scheduler_role_arn")

    def sync(ruleset: RuleSet) -> SyncResult:
        from funnelcast.aws.clients import client  # noqa: PLC0415

        return sync_schedules(
            ruleset,
            scheduler_client or client("scheduler"),
            settings.schedule_group,
            settings.planner_function_arn,
            settings.scheduler_role_arn,
            now=clock() if clock is not None else None,
        )

    return sync


def one_time_schedule_name(prefix: str, key: str) -> str:
    """A legal, stable schedule name for ``key`` (e.g. ``waiting-`` + a waiting batch's object key)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return _fit_name(f"{prefix}{digest}")


def create_one_time_schedule(  # noqa: PLR0917
    client: Any,
    group: str,
    name: str,
    at_utc: datetime,
    target_arn: str,
    role_arn: str,
    payload: Mapping[str, Any],
) -> bool:
    """Create an ``at(...)`` schedule (UTC) invoking ``target_arn`` once with ``payload``; deleted after it runs.

    Idempotent: returns ``True`` when created, ``False`` when a schedule of that name already
    exists (a re-invoked planner). ``at_utc`` must be aware; seconds are rounded UP to the next
    minute (Scheduler has minute precision, and a waiting batch must never be released early).
    """
    if at_utc.tzinfo is None:
        raise SchedulerError(f"one-time schedule {name}: at_utc must be timezone-aware, got {at_utc.isoformat()}")
    if _fit_name(name) != name:
        raise SchedulerError(f"schedule name {name!r} is not [0-9A-Za-z_.-]{{1,64}}: use one_time_schedule_name")
    moment = at_utc.astimezone(UTC)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + _ONE_MINUTE
    request = {
        "Name": name,
        "GroupName": group,
        "ScheduleExpression": f"at({moment:%Y-%m-%dT%H:%M:%S})",
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {"Arn": target_arn, "RoleArn": role_arn, "Input": json.dumps(dict(payload), sort_keys=True)},
        "ActionAfterCompletion": "DELETE",
        "State": "ENABLED",
    }
    try:
        client.create_schedule(**request)
    except Exception as exc:
        if error_code(exc) == "ConflictException":
            return False
        raise SchedulerError(f"EventBridge Scheduler create_schedule {name} failed ({error_code(exc)}): {exc}") from exc
    return True
