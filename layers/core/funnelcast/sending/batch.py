"""The SQS batch side of the worker: partial batch responses and one deliveries object per invocation."""

from __future__ import annotations

from typing import Any

from funnelcast.jobs import DeliveryRecord
from funnelcast.sending.worker import JobInterruptedError, SenderDependencies, parse_job, process_job, write_deliveries


class RetryLaterError(Exception):
    """Some recipients of this record must be tried again: SQS redelivers it (partial failure)."""


def handle_batch(event: dict[str, Any], context: Any, deps: SenderDependencies, channel: str) -> dict[str, Any]:
    """Process every SQS record; failed ones are reported in ``batchItemFailures``.

    A poison record (bad JSON, schema violation, wrong channel) raises inside its own record handler,
    so it fails alone and reaches the DLQ after ``maxReceiveCount``; the rest of the batch goes on.
    """
    from aws_lambda_powertools.utilities.batch import (  # noqa: PLC0415
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    records: list[DeliveryRecord] = []

    def record_handler(record: Any) -> None:
        try:
            job = parse_job(record.body, channel)
        except Exception as exc:
            deps.log(
                "poison job: dead-lettered after maxReceiveCount", {"message_id": record.message_id, "error": str(exc)}
            )
            raise
        try:
            outcome = process_job(job, deps)
        except JobInterruptedError as exc:
            records.extend(exc.outcome.records)
            deps.log("job interrupted", {"job_id": job.job_id, "error": str(exc)})
            raise
        except Exception as exc:
            deps.log("job failed", {"job_id": job.job_id, "error": f"{type(exc).__name__}: {exc}"})
            raise
        records.extend(outcome.records)
        if outcome.retry:
            raise RetryLaterError(f"job {job.job_id}: some recipients must be retried")

    # Report every failed record, even when all fail, instead of erroring the whole invocation.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    try:
        response = dict(
            process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
        )
    finally:
        # Rows of recipients already sent are written even if a later record blew up.
        write_deliveries(records, channel, deps.clock(), deps.deliveries)
    return response
