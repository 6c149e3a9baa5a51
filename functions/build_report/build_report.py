"""BuildReportFunction (EventBridge Scheduler, daily): KPIs and the HTML report into the data bucket,
and the daily suppression rebuild. Thin: parse the event, call :mod:`funnelcast.reporting.scheduled`.

Event: ``{"source": "schedule", "now": "<aws.scheduler.scheduled-time>"}`` (the template's input;
``scheduled_time`` is accepted for ``now`` too); optional ``"days"`` (look-back, default 30). Without a time
the report is for the current clock; pass an older ``now`` to rebuild a past day's report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from funnelcast.reporting.scheduled import ReportDependencies, build_scheduled_report
from funnelcast.settings import get_settings

logger = Logger(service="build_report")
tracer = Tracer(service="build_report")
metrics = Metrics(namespace="funnelcast", service="build_report")
_deps: dict[str, ReportDependencies] = {}
#: KPI columns published per campaign (EMF, dimension ``campaign_id``).
CAMPAIGN_METRICS = {
    "sent": "CampaignSent",
    "delivered": "CampaignDelivered",
    "opened": "CampaignOpened",
    "clicked": "CampaignClicked",
    "converted": "CampaignConverted",
}


class ReportEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = "schedule"
    days: int = Field(default=30, ge=1, le=400)
    now: AwareDatetime | None = None
    scheduled_time: AwareDatetime | None = Field(default=None, description="Scheduler's time; same as now")


def dependencies() -> ReportDependencies:
    if "deps" not in _deps:
        deps = ReportDependencies.from_settings(get_settings())
        deps.log = lambda message, extra: logger.info(message, extra=extra)
        _deps["deps"] = deps
    return _deps["deps"]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parsed = ReportEvent.model_validate(event or {})
    now = parsed.now or parsed.scheduled_time or datetime.now(UTC)
    report = build_scheduled_report(dependencies(), now=now, days=parsed.days)
    metrics.add_metric(name="SuppressionRows", unit=MetricUnit.Count, value=report.counts["suppression_rows"])
    metrics.add_metric(name="FeedbackUnknownSendIds", unit=MetricUnit.Count, value=report.counts["unknown_send_ids"])
    totals = report.kpis.groupby("campaign_id")[list(CAMPAIGN_METRICS)].sum() if len(report.kpis) else None
    for campaign_id, row in totals.iterrows() if totals is not None else []:
        for column, name in CAMPAIGN_METRICS.items():
            with single_metric(
                name=name,
                unit=MetricUnit.Count,
                value=int(row[column]),
                namespace="funnelcast",
                default_dimensions={"service": "build_report"},
            ) as metric:
                metric.add_dimension(name="campaign_id", value=str(campaign_id))
    return {"keys": report.keys, **report.counts}
