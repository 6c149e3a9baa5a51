"""Scheduling: when campaigns fire (pure) and their EventBridge Scheduler schedules (adapter).

API
---
``due_between(schedule, tz, start_utc, end_utc) -> list[datetime]``
    Every fire of a campaign ``Schedule`` in ``[start_utc, end_utc)`` (aware UTC, ascending):
    EventBridge ``cron`` (six fields, ``? L W # , - * /``, names), ``rate``, ``at``, read in
    ``schedule.timezone`` or else ``tz`` (the policy's ``default_timezone``), within start/end.
    The demo's simulated clock calls it tick by tick; consecutive windows see each fire once.
    ``next_fire_after(schedule, tz, after_utc)`` gives the next one.

``sync_schedules(ruleset, scheduler_client, group, target_arn, role_arn, *, now=None) -> SyncResult``
    One schedule per campaign, named ``campaign-<id>``, in the stack's group; target input
    ``{"campaign_id": "<id>", "scheduled_time": "<aws.scheduler.scheduled-time>"}``; creates,
    updates and deletes to match the rule set (other schedules of the group are never touched).
    ``at`` / ``end`` already past -> no schedule (``expired``); a ``rate`` schedule gets its next
    fire on the ``due_between`` grid as StartDate, so AWS and the simulated clock agree.
    ``schedule_sync_callback(settings, clock=...)`` wraps it for
    ``activate_rules(..., on_activated=[...])`` (wired in ``functions/activate_rules``).

``create_one_time_schedule(client, group, name, at_utc, target_arn, role_arn, payload) -> bool``
    For the planner's waiting batches: an ``at(...)`` schedule in UTC (rounded UP to the minute,
    never early), deleted by Scheduler after it runs, input = ``payload`` as JSON (e.g.
    ``{"action": "release_waiting", "key": "waiting/<run_id>/<until>.json"}``). Returns ``False``
    when the name already exists (idempotent re-invocation). Make names with
    ``one_time_schedule_name("waiting-", key)``.
"""

from __future__ import annotations

from funnelcast.scheduling.cron import CronError, CronExpression
from funnelcast.scheduling.due import due_between, next_fire_after, schedule_bounds
from funnelcast.scheduling.sync import (
    SyncResult,
    campaign_schedule_name,
    create_one_time_schedule,
    one_time_schedule_name,
    schedule_sync_callback,
    sync_schedules,
)

__all__ = [
    "CronError",
    "CronExpression",
    "SyncResult",
    "campaign_schedule_name",
    "create_one_time_schedule",
    "due_between",
    "next_fire_after",
    "one_time_schedule_name",
    "schedule_bounds",
    "schedule_sync_callback",
    "sync_schedules",
]
