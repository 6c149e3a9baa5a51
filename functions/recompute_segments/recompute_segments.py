"""RecomputeSegmentsFunction: recompute every segment of the active rule set and publish a snapshot.

Events: the Scheduler target input ``{"source": "schedule"}`` (optionally with
``"scheduled_time": "<aws.scheduler.scheduled-time>"``) or an on-demand ``{"at": "2026-12-01T01:00:00Z"}``.
``at`` wins, then ``scheduled_time``, else the invocation minute. Naive times are UTC.
Segment sizes and the run's durations go out as EMF metrics; ``segments/latest.json`` moves only
after the snapshot is complete, so a failed run leaves the previous snapshot current.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from funnelcast.segments.service import RecomputeDependencies, recompute_active
from funnelcast.settings import get_settings

logger = Logger(service="recompute_segments")
tracer = Tracer(service="recompute_segments")
metrics = Metrics(namespace="funnelcast", service="recompute_segments")
_deps: dict[str, RecomputeDependencies] = {}


class RecomputeEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["schedule", "manual"] = "manual"
    at: datetime | None = None
    scheduled_time: datetime | None = None


def dependencies() -> RecomputeDependencies:
    """Built once per container (the boto3 client is created lazily on first use)."""
    if "deps" not in _deps:
        _deps["deps"] = RecomputeDependencies.from_settings(get_settings())
    return _deps["deps"]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parsed = RecomputeEvent.model_validate(event or {})
    outcome = recompute_active(dependencies(), parsed.at or parsed.scheduled_time)
    manifest = outcome.manifest
    timings: dict[str, float] = manifest["timings"]
    metrics.add_metric(name="RecomputeSeconds", unit=MetricUnit.Seconds, value=timings["load"] + timings["total"])
    metrics.add_metric(name="LoadSeconds", unit=MetricUnit.Seconds, value=timings["load"])
    metrics.add_metric(name="Customers", unit=MetricUnit.Count, value=manifest["customers"])
    metrics.add_metric(name="QuarantinedRows", unit=MetricUnit.Count, value=sum(manifest["quarantined"].values()))
    metrics.add_metric(name="PeakMemory", unit=MetricUnit.Bytes, value=manifest["peak_memory_bytes"])
    for segment_id, size in manifest["counts"].items():
        # One EMF blob per segment: a per-segment dimension cannot share the function's blob.
        with single_metric(
            name="SegmentSize",
            unit=MetricUnit.Count,
            value=size,
            namespace="funnelcast",
            default_dimensions={"service": "recompute_segments"},
        ) as metric:
            metric.add_dimension(name="segment", value=segment_id)
    logger.info(
        "segments recomputed",
        extra={
            "run_id": manifest["run_id"],
            "snapshot": outcome.prefix,
            "rules_hash": manifest["rules_hash"],
            "customers": manifest["customers"],
            "quarantined": manifest["quarantined"],
        },
    )
    return {
        "run_id": manifest["run_id"],
        "at": manifest["at"],
        "rules_hash": manifest["rules_hash"],
        "snapshot": outcome.prefix,
        "customers": manifest["customers"],
        "counts": manifest["counts"],
        "quarantined": manifest["quarantined"],
    }
