"""Fire what EventBridge Scheduler would fire, reading the schedules from the scheduler API (moto).

The demo never keeps its own list of what runs when: campaign schedules are created by the
activation's schedule sync, waiting batches by the planner, the recompute and report schedules by
template.yaml. Each tick this reads the group's schedules and asks
:func:`funnelcast.scheduling.due_between` (the same evaluation the project uses for Scheduler
semantics) which of them fire in the tick's window. One-time ``at()`` schedules with
``ActionAfterCompletion: DELETE`` are deleted after they fire, as Scheduler does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from funnelcast.errors import SchedulerError
from funnelcast.rules.models import Schedule
from funnelcast.scheduling import due_between

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
_EXPRESSION = re.compile(r"^(cron|rate|at)\((.+)\)$")


@dataclass(frozen=True)
class ScheduleDefinition:
    """One schedule as ``GetSchedule`` returned it, with its evaluation model."""

    name: str
    group: str
    expression: str
    timezone: str
    target_arn: str
    target_input: str
    delete_after_completion: bool
    schedule: Schedule


@dataclass(frozen=True)
class Firing:
    """One invocation Scheduler would make: when, which schedule, and the target input it sends."""

    at: datetime
    definition: ScheduleDefinition
    payload: dict[str, Any]


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def parse_definition(response: dict[str, Any]) -> ScheduleDefinition:
    """A ``GetSchedule`` response as a :class:`ScheduleDefinition` (clear error for what it cannot read)."""
    name = str(response.get("Name", "?"))
    expression = str(response.get("ScheduleExpression", ""))
    match = _EXPRESSION.match(expression)
    if match is None:
        raise SchedulerError(f"schedule {name}: cannot read ScheduleExpression {expression!r}")
    kind, inner = match.groups()
    timezone = str(response.get("ScheduleExpressionTimezone") or "UTC")
    fields: dict[str, Any] = {"timezone": timezone}
    if kind == "at":
        fields["at"] = datetime.fromisoformat(inner)
    else:
        fields[kind] = inner
    start, end = _as_utc(response.get("StartDate")), _as_utc(response.get("EndDate"))
    if start is not None:
        fields["start"] = start
    if end is not None:
        fields["end"] = end
    target = response.get("Target", {})
    return ScheduleDefinition(
        name=name,
        group=str(response.get("GroupName", "default")),
        expression=expression,
        timezone=timezone,
        target_arn=str(target.get("Arn", "")),
        target_input=str(target.get("Input", "{}")),
        delete_after_completion=response.get("ActionAfterCompletion") == "DELETE",
        schedule=Schedule.model_validate(fields),
    )


class SimulatedScheduler:
    """EventBridge Scheduler's firing, driven by the demo's clock, over one schedule group."""

    def __init__(self, scheduler_client: Any, group: str) -> None:
        self._client = scheduler_client
        self.group = group
        self._known: dict[str, ScheduleDefinition] = {}
        self.fired = 0

    def invalidate(self) -> None:
        """Forget cached definitions (after something may have updated schedules in place)."""
        self._known.clear()

    def refresh(self) -> dict[str, ScheduleDefinition]:
        """List the group (one request per page) and read the definitions not seen yet."""
        names: list[str] = []
        request: dict[str, Any] = {"GroupName": self.group}
        while True:
            page = self._client.list_schedules(**request)
            names += [s["Name"] for s in page.get("Schedules", []) if s.get("State", "ENABLED") == "ENABLED"]
            token = page.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
        current = set(names)
        for name in list(self._known):
            if name not in current:
                del self._known[name]
        for name in names:
            if name not in self._known:
                response = self._client.get_schedule(Name=name, GroupName=self.group)
                self._known[name] = parse_definition(response)
        return dict(self._known)

    def due(self, start: datetime, end: datetime) -> list[Firing]:
        """Every firing in ``[start, end)``, in time order (ties: schedule name)."""
        firings: list[Firing] = []
        for definition in self.refresh().values():
            for moment in due_between(definition.schedule, definition.timezone, start, end):
                text = definition.target_input.replace(SCHEDULED_TIME, moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
                try:
                    payload = json.loads(text) if text else {}
                except ValueError as exc:
                    raise SchedulerError(f"schedule {definition.name}: target input is not JSON: {exc}") from exc
                firings.append(Firing(moment, definition, payload))
        return sorted(firings, key=lambda f: (f.at, f.definition.name))

    def completed(self, firing: Firing) -> None:
        """After a firing: a one-time schedule set to delete after completion is deleted."""
        self.fired += 1
        definition = firing.definition
        if definition.delete_after_completion and definition.schedule.at is not None:
            self._client.delete_schedule(Name=definition.name, GroupName=definition.group)
            self._known.pop(definition.name, None)
