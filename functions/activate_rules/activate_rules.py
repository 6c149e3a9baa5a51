"""ActivateRulesFunction: S3 upload under ``incoming/`` -> validate the whole set -> activate or report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.typing import LambdaContext

from funnelcast.activation import activate_rules
from funnelcast.rules.models import RuleSet
from funnelcast.settings import get_settings
from funnelcast.storage import ObjectStore, S3Store

logger = Logger(service="activate_rules")
tracer = Tracer(service="activate_rules")
metrics = Metrics(namespace="funnelcast", service="activate_rules")


def rules_store() -> ObjectStore:
    """The rules bucket named by RULES_BUCKET (cheap: the boto3 client itself is cached)."""
    settings = get_settings()
    settings.require("rules_bucket")
    return S3Store(settings.rules_bucket)


def schedule_sync(now: datetime) -> list[Callable[[RuleSet], None]]:
    """Sync one EventBridge Scheduler schedule per campaign after activation (raises -> S3 retries it)."""
    settings = get_settings()
    if not settings.planner_function_arn or not settings.scheduler_role_arn:
        logger.warning("campaign schedules not synced: PLANNER_FUNCTION_ARN or SCHEDULER_ROLE_ARN is not set")
        return []
    from funnelcast.scheduling import schedule_sync_callback  # noqa: PLC0415  (only when rules change)

    sync = schedule_sync_callback(settings, clock=lambda: now)

    def sync_and_report(ruleset: RuleSet) -> None:
        result = sync(ruleset)
        # "created" is a LogRecord attribute: prefix the keys
        logger.info("campaign schedules synced", extra={f"schedules_{k}": v for k, v in asdict(result).items()})
        metrics.add_metric(
            name="SchedulesChanged",
            unit=MetricUnit.Count,
            value=len(result.created) + len(result.updated) + len(result.deleted),
        )

    return [sync_and_report]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s3_event = S3Event(event)
    results = []
    for record in s3_event.records:
        upload_key = unquote_plus(record.s3.get_object.key)
        now = datetime.now(UTC)
        result = activate_rules(rules_store(), upload_key, now=now, on_activated=schedule_sync(now))
        if result.activated:
            metrics.add_metric(name="RuleSetsActivated", unit=MetricUnit.Count, value=1)
            logger.info("rule set activated", extra={"rules_hash": result.rules_hash, "campaigns": result.campaigns})
        else:
            metrics.add_metric(name="RuleSetsRejected", unit=MetricUnit.Count, value=1)
            logger.warning("rule set rejected", extra={"problems": result.problems, "report": result.report_key})
        results.append(result.as_dict())
    return {"results": results}
