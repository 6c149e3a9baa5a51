"""PlanCampaignFunction: a campaign schedule fired, or a waiting batch's one-time schedule did.

Events (EventBridge Scheduler target input):
``{"campaign_id": "cart_recovery", "scheduled_time": "2026-12-01T01:00:00Z"}`` -> plan that run;
``{"action": "release_waiting", "key": "waiting/<run_id>/<until>.json"}`` -> enqueue a waiting batch.
The run record (StateTable conditional put) makes a second firing of the same minute a no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from funnelcast.planning.planner import PlannerDependencies, plan_campaign, release_waiting
from funnelcast.settings import get_settings

logger = Logger(service="plan_campaign")
tracer = Tracer(service="plan_campaign")
metrics = Metrics(namespace="funnelcast", service="plan_campaign")
_deps: dict[str, PlannerDependencies] = {}


class PlanEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["plan"] = "plan"
    campaign_id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    scheduled_time: datetime


class ReleaseEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["release_waiting"]
    key: str = Field(pattern=r"^waiting/[^/]+/[0-9TZ]+\.json$")


PlannerEvent: TypeAdapter[PlanEvent | ReleaseEvent] = TypeAdapter(
    Annotated[PlanEvent | ReleaseEvent, Field(discriminator="action")]
)


def dependencies() -> PlannerDependencies:
    """Built once per container (clients are created lazily on first use)."""
    if "deps" not in _deps:
        deps = PlannerDependencies.from_settings(get_settings())
        deps.log = lambda message, extra: logger.info(message, extra=extra)
        _deps["deps"] = deps
    return _deps["deps"]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parsed = PlannerEvent.validate_python({"action": "plan", **event} if "action" not in event else event)
    if isinstance(parsed, ReleaseEvent):
        released = release_waiting(parsed.key, dependencies())
        metrics.add_metric(name="WaitingRecipientsReleased", unit=MetricUnit.Count, value=released.recipients)
        return released.model_dump(mode="json")
    summary = plan_campaign(parsed.campaign_id, parsed.scheduled_time, dependencies())
    if summary.status == "failed":
        logger.error("campaign run failed", extra={"run_id": summary.run_id, "error": summary.error})
        metrics.add_metric(name="RunsFailed", unit=MetricUnit.Count, value=1)
    for outcome, count in summary.outcomes.items():
        metrics.add_metric(name=f"Decisions_{outcome}", unit=MetricUnit.Count, value=count)
    return summary.model_dump(mode="json")
