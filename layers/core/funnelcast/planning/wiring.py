"""AWS-backed planner dependencies built from settings (imported on the first invocation)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from funnelcast.aws.clients import client
from funnelcast.aws.queues import JobQueue
from funnelcast.planning.planner import PlannerDependencies
from funnelcast.planning.runs import DynamoRunRecords
from funnelcast.rules.models import Policy
from funnelcast.settings import Settings
from funnelcast.storage import S3Store

RELEASE_ACTION = "release_waiting"


@dataclass
class SchedulerWaits:
    """Waiting batches released by one-time EventBridge Scheduler ``at()`` schedules targeting the planner."""

    group: str
    target_arn: str
    role_arn: str
    scheduler_client: Any = None

    def schedule_release(self, key: str, at: datetime) -> None:
        from funnelcast.scheduling import create_one_time_schedule, one_time_schedule_name  # noqa: PLC0415

        scheduler = self.scheduler_client if self.scheduler_client is not None else client("scheduler")
        create_one_time_schedule(
            scheduler,
            self.group,
            one_time_schedule_name("waiting-", key),
            at,
            self.target_arn,
            self.role_arn,
            {"action": RELEASE_ACTION, "key": key},
        )


def dependencies_from_settings(settings: Settings) -> PlannerDependencies:
    """S3 stores, the cap table's bulk read, the StateTable run records, the job queues, Scheduler."""
    settings.require(
        "rules_bucket", "data_bucket", "cap_table", "state_table", "planner_function_arn", "scheduler_role_arn"
    )
    from funnelcast.caps.store import CapStore  # noqa: PLC0415

    # usage_of() does not read the policy (only reserve() checks caps): any policy will do here.
    usage = CapStore(settings.cap_table, Policy(kind="policy"))
    return PlannerDependencies(
        rules=S3Store(settings.rules_bucket),
        data=S3Store(settings.data_bucket),
        usage=usage,
        runs=DynamoRunRecords(settings.state_table),
        queues=JobQueue(settings.queue_url),
        waits=SchedulerWaits(settings.schedule_group, settings.planner_function_arn, settings.scheduler_role_arn),
        read_threads=4,
    )


def release_due_batches(deps: PlannerDependencies, scheduler_client: Any, group: str, now: datetime) -> list[Any]:
    """Fire, as EventBridge Scheduler would, every waiting-batch schedule due at ``now`` (the demo's clock).

    Lists the group's ``waiting-*`` schedules, releases those whose ``at(...)`` is not after ``now``
    through :func:`release_waiting`, then deletes them (``ActionAfterCompletion: DELETE`` in AWS).
    Returns the release summaries in schedule-time order.
    """
    from funnelcast.planning.planner import release_waiting  # noqa: PLC0415

    due: list[tuple[datetime, str, str]] = []
    paginator = scheduler_client.get_paginator("list_schedules")
    for page in paginator.paginate(GroupName=group, NamePrefix="waiting-"):
        for listed in page.get("Schedules", []):
            detail = scheduler_client.get_schedule(Name=listed["Name"], GroupName=group)
            expression = str(detail["ScheduleExpression"])
            if not expression.startswith("at("):
                continue
            fires = datetime.fromisoformat(expression[3:-1]).replace(tzinfo=UTC)
            payload = json.loads(detail["Target"]["Input"])
            if fires <= now and payload.get("action") == RELEASE_ACTION:
                due.append((fires, listed["Name"], str(payload["key"])))
    summaries = []
    for _, name, key in sorted(due):
        summaries.append(release_waiting(key, deps))
        scheduler_client.delete_schedule(Name=name, GroupName=group)
    return summaries
