"""SQS -> channel sender. One module deployed once per channel (env ``CHANNEL``).

Kept thin and light to import: Powertools, pydantic models and the domain code load on the first
invocation, so the module import stays within the 150 ms cold-import budget.
"""

from __future__ import annotations

from typing import Any

_runtime: dict[str, Any] = {}


def _build() -> Any:
    from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: PLC0415

    from funnelcast.sending.batch import handle_batch  # noqa: PLC0415
    from funnelcast.sending.logging import masking_formatter  # noqa: PLC0415
    from funnelcast.sending.worker import SenderDependencies  # noqa: PLC0415
    from funnelcast.settings import get_settings  # noqa: PLC0415

    settings = get_settings()
    logger = Logger(service="send_message", logger_formatter=masking_formatter())
    metrics = Metrics(namespace="funnelcast", service="send_message")
    tracer = Tracer(service="send_message")
    metrics.set_default_dimensions(channel=settings.channel)
    deps = SenderDependencies.from_settings(settings)
    deps.metrics = metrics
    deps.log = lambda message, extra: logger.info(message, extra=extra)
    for channel, provider in list(deps.providers.items()):
        provider.send = tracer.capture_method(provider.send)  # type: ignore[method-assign]
        del channel

    @metrics.log_metrics
    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return handle_batch(event, context, deps, settings.channel)

    return handler


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Partial batch response (``ReportBatchItemFailures``) for one SQS batch of send jobs."""
    if "handler" not in _runtime:
        _runtime["handler"] = _build()
    result: dict[str, Any] = _runtime["handler"](event, context)
    return result
