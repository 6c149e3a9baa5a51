"""IngestFeedbackFunction: SES/SNS events from the FeedbackQueue, and vendor reports / unsubscribe links
on the Function URL. Thin: parse the event, call :mod:`funnelcast.feedback.service`, return.

SQS batches answer a partial batch response (``ReportBatchItemFailures``): a record that is not a
feedback event fails alone and reaches the FeedbackDLQ after its retries. The batch's events are
written once, after every record was parsed; if that write fails the whole batch is retried, which
is safe because event ids de-duplicate and the object key is a hash of them.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from funnelcast.feedback.normalize import FeedbackEvent, FeedbackInputError, parse_sqs_body
from funnelcast.feedback.service import FeedbackDependencies, HttpRequest, StoredBatch, handle_http, store_events
from funnelcast.settings import get_settings

logger = Logger(service="ingest_feedback")
tracer = Tracer(service="ingest_feedback")
metrics = Metrics(namespace="funnelcast", service="ingest_feedback")
processor = BatchProcessor(event_type=EventType.SQS)
_deps: dict[str, FeedbackDependencies] = {}


def dependencies() -> FeedbackDependencies:
    """Built once per container; the secret is read from SSM on first use."""
    if "deps" not in _deps:
        deps = FeedbackDependencies.from_settings(get_settings())
        deps.log = lambda message, extra: logger.info(message, extra=extra)
        deps.warn = lambda message, extra: logger.warning(message, extra=extra)
        _deps["deps"] = deps
    return _deps["deps"]


def _count(stored: StoredBatch) -> None:
    for kind, count in stored.counts.items():
        metrics.add_metric(name=f"Feedback_{kind}", unit=MetricUnit.Count, value=count)
    if stored.rebuilt:
        metrics.add_metric(name="SuppressionRows", unit=MetricUnit.Count, value=stored.suppression_rows)
        metrics.add_metric(name="FeedbackUnknownSendIds", unit=MetricUnit.Count, value=stored.unknown_send_ids)


def _sqs(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    collected: list[FeedbackEvent] = []

    def record_handler(record: SQSRecord) -> None:
        try:
            collected.extend(parse_sqs_body(record.body))
        except FeedbackInputError as exc:
            logger.warning("feedback record refused", extra={"message_id": record.message_id, "reason": str(exc)})
            metrics.add_metric(name="FeedbackRejected", unit=MetricUnit.Count, value=1)
            raise

    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    stored = store_events(collected, dependencies())
    _count(stored)
    logger.info("feedback batch stored", extra=stored.model_dump(mode="json"))
    return dict(response)


def _http(event: dict[str, Any]) -> dict[str, Any]:
    try:
        request = HttpRequest.from_function_url(event)
    except FeedbackInputError as exc:
        metrics.add_metric(name="FeedbackRejected", unit=MetricUnit.Count, value=1)
        return {"statusCode": 400, "headers": {"Content-Type": "application/json"}, "body": f'{{"error": "{exc}"}}'}
    response = handle_http(request, dependencies())
    if response.status == 401:
        metrics.add_metric(name="FeedbackUnauthorized", unit=MetricUnit.Count, value=1)
    elif response.status >= 400:
        metrics.add_metric(name="FeedbackRejected", unit=MetricUnit.Count, value=1)
    if response.stored is not None:
        _count(response.stored)
    return response.to_function_url()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """An SQS batch (``Records``) or a Function URL request (``requestContext.http``)."""
    if "requestContext" in event and "http" in event.get("requestContext", {}):
        return _http(event)
    return _sqs(event, context)
