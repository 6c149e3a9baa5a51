"""Drain SQS queues into handlers in process, the way the Lambda event source mapping would.

moto never runs Lambda code, so the demo plays the event source mapping (ESM): receive up to the
batch size, hand the batch to the function as an ``aws:sqs`` event, delete what succeeded, leave the
``batchItemFailures`` in the queue. moto's visibility timeout runs on the wall clock, the demo's on
the simulated one: a failed message is tracked with the simulated time its visibility timeout
ends, and then made visible again with ``ChangeMessageVisibility(0)``. moto's redrive policy moves
a message to its dead-letter queue when it is received after ``maxReceiveCount`` receives, as SQS
does. The last error of every failed message is kept, so a dead-lettered job has a reason.

Fault injection (the fault run): ``duplicate_rate`` puts a copy of a successfully processed body
back in the queue (SQS's at-least-once delivery).
"""

from __future__ import annotations

import hashlib
import heapq
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from funnelcast.demo.clock import SimulatedClock
from funnelcast.demo.requests import RequestCounter

BatchHandler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_RECEIVE = 10
WALL_CLOCK_VISIBILITY = 43_200
DUPLICATE_MARK = "demo-duplicate"
_FILLING = {"SendMessage", "SendMessageBatch", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch"}


@dataclass
class QueueSource:
    """One queue polled for one function (``SqsSource`` of the template, plus the handler)."""

    function: str
    queue: str  # logical id
    queue_url: str
    queue_arn: str
    batch_size: int
    visibility_timeout: int
    report_batch_item_failures: bool
    handler: BatchHandler


@dataclass
class _Invisible:
    receipt_handle: str
    visible_at: datetime


@dataclass
class DispatchStats:
    invocations: int = 0
    records: int = 0
    succeeded: int = 0
    failed: int = 0
    duplicates_injected: int = 0
    handler_errors: int = 0
    per_function: dict[str, int] = field(default_factory=dict)


class QueueDispatcher:
    """The demo's event source mappings: every queue with a handler, drained on demand."""

    def __init__(
        self,
        sqs_client: Any,
        clock: SimulatedClock,
        *,
        region: str,
        duplicate_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self._sqs = sqs_client
        self._clock = clock
        self._region = region
        self.sources: list[QueueSource] = []
        self._invisible: dict[str, dict[str, _Invisible]] = {}  # queue url -> message id -> handle
        self.last_error: dict[str, str] = {}  # message id -> last failure reason
        self.duplicate_rate = duplicate_rate
        self._rng = random.Random(seed)
        self.stats = DispatchStats()
        # Queues that may hold a visible message. The event source mapping polls all the time; the
        # demo polls a queue only after something was sent to it (seen by a botocore hook), which
        # saves thousands of empty ReceiveMessage calls and changes no outcome.
        self._dirty: set[str] = set()
        self._dirty_lock = threading.Lock()

    def add(self, source: QueueSource) -> None:
        self.sources.append(source)
        self._invisible.setdefault(source.queue_url, {})
        self._dirty.add(source.queue_url)

    def observe(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        """A botocore call was made (see :class:`RequestCounter` observers): note queues that got messages."""
        if service == "sqs" and operation in _FILLING and "QueueUrl" in params:
            with self._dirty_lock:
                self._dirty.add(str(params["QueueUrl"]))
        elif service == "sns" and operation in {"Publish", "PublishBatch"}:
            with self._dirty_lock:  # topics deliver to subscribed queues inside moto
                self._dirty.update(source.queue_url for source in self.sources)

    def note_error(self, message_id: str, reason: str) -> None:
        """Remember why a message failed (handlers log it; the dispatcher keeps the last one)."""
        self.last_error[message_id] = reason

    def in_flight(self) -> int:
        """Messages received, failed and not visible again yet."""
        return sum(len(v) for v in self._invisible.values())

    def next_visible_at(self) -> datetime | None:
        times = [item.visible_at for queue in self._invisible.values() for item in queue.values()]
        return min(times) if times else None

    def expire_visibility(self) -> int:
        """Make failed messages whose (simulated) visibility timeout ended visible again."""
        now = self._clock.now()
        released = 0
        with RequestCounter.simulating():
            for url, items in self._invisible.items():
                due = [(mid, item) for mid, item in items.items() if item.visible_at <= now]
                for start in range(0, len(due), MAX_RECEIVE):
                    chunk = due[start : start + MAX_RECEIVE]
                    entries = [
                        {"Id": str(i), "ReceiptHandle": item.receipt_handle, "VisibilityTimeout": 0}
                        for i, (_, item) in enumerate(chunk)
                    ]
                    self._sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
                    for mid, _ in chunk:
                        del items[mid]
                    released += len(chunk)
                    with self._dirty_lock:
                        self._dirty.add(url)
        return released

    def drain(self, max_rounds: int = 1000) -> int:
        """Poll every queue until a whole pass receives nothing; returns the records handed over."""
        total = 0
        for _ in range(max_rounds):
            self.expire_visibility()
            received = sum(self._drain_queue(source) for source in self.sources)
            total += received
            if received == 0:
                return total
        raise RuntimeError(f"queues still not drained after {max_rounds} rounds")

    def _receive(self, source: QueueSource) -> list[dict[str, Any]]:
        with RequestCounter.simulating():
            response = self._sqs.receive_message(
                QueueUrl=source.queue_url,
                MaxNumberOfMessages=min(source.batch_size, MAX_RECEIVE),
                # The simulated visibility timeout is tracked here; moto's wall-clock one must never
                # end first (or a failed message would come back early), so it is the maximum.
                VisibilityTimeout=WALL_CLOCK_VISIBILITY,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _drain_queue(self, source: QueueSource) -> int:
        handed = 0
        while True:
            with self._dirty_lock:
                if source.queue_url not in self._dirty:
                    return handed
                self._dirty.discard(source.queue_url)
            messages = self._receive(source)
            if not messages:
                return handed
            with self._dirty_lock:
                self._dirty.add(source.queue_url)  # there may be more
            handed += len(messages)
            self._invoke(source, messages)

    def _event(self, source: QueueSource, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": message.get("MessageAttributes", {}),
                    "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                    "eventSource": "aws:sqs",
                    "eventSourceARN": source.queue_arn,
                    "awsRegion": self._region,
                }
                for message in messages
            ]
        }

    def _invoke(self, source: QueueSource, messages: list[dict[str, Any]]) -> None:
        stats = self.stats
        stats.invocations += 1
        stats.records += len(messages)
        stats.per_function[source.function] = stats.per_function.get(source.function, 0) + 1
        ids = [m["MessageId"] for m in messages]
        try:
            response = source.handler(self._event(source, messages))
            failed = {str(item["itemIdentifier"]) for item in (response or {}).get("batchItemFailures", [])}
            if failed and not source.report_batch_item_failures:
                failed = set(ids)  # without ReportBatchItemFailures a partial failure fails the batch
        except Exception as exc:  # the whole invocation failed: every record comes back
            stats.handler_errors += 1
            failed = set(ids)
            for mid in ids:
                self.last_error.setdefault(mid, f"{type(exc).__name__}: {exc}")
        visible_at = self._clock.now() + timedelta(seconds=source.visibility_timeout)
        done = [m for m in messages if m["MessageId"] not in failed]
        for message in messages:
            if message["MessageId"] in failed:
                stats.failed += 1
                self.last_error.setdefault(message["MessageId"], "reported in batchItemFailures")
                self._invisible[source.queue_url][message["MessageId"]] = _Invisible(
                    message["ReceiptHandle"], visible_at
                )
        stats.succeeded += len(done)
        with RequestCounter.simulating():
            for start in range(0, len(done), MAX_RECEIVE):
                chunk = done[start : start + MAX_RECEIVE]
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
                self._sqs.delete_message_batch(QueueUrl=source.queue_url, Entries=entries)
            for message in done:
                if DUPLICATE_MARK in message.get("MessageAttributes", {}):
                    continue  # a copy is not copied again (rate 1.0 would never drain)
                if self.duplicate_rate and self._rng.random() < self.duplicate_rate:
                    # At-least-once delivery: the same job body arrives again later.
                    self._sqs.send_message(
                        QueueUrl=source.queue_url,
                        MessageBody=message["Body"],
                        MessageAttributes={DUPLICATE_MARK: {"DataType": "String", "StringValue": "1"}},
                    )
                    stats.duplicates_injected += 1
                    with self._dirty_lock:
                        self._dirty.add(source.queue_url)

    def dead_letters(self, dlq_urls: dict[str, str]) -> list[dict[str, Any]]:
        """Every message in the given DLQs (logical id -> URL), with the last error its source saw.

        Messages are read, then made visible again, so they stay in the DLQ for a redrive.
        """
        letters: list[dict[str, Any]] = []
        with RequestCounter.simulating():
            for logical_id, url in sorted(dlq_urls.items()):
                handles: list[str] = []
                while True:
                    response = self._sqs.receive_message(
                        QueueUrl=url, MaxNumberOfMessages=MAX_RECEIVE, VisibilityTimeout=300, AttributeNames=["All"]
                    )
                    messages = response.get("Messages", [])
                    if not messages:
                        break
                    for message in messages:
                        handles.append(message["ReceiptHandle"])
                        letters.append(
                            {
                                "dlq": logical_id,
                                "message_id": message["MessageId"],
                                "body": message["Body"],
                                "receive_count": int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
                                "reason": self.last_error.get(message["MessageId"], "unknown"),
                            }
                        )
                for start in range(0, len(handles), MAX_RECEIVE):
                    entries = [
                        {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                        for i, handle in enumerate(handles[start : start + MAX_RECEIVE])
                    ]
                    self._sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
        return letters


class JobQueues(Protocol):
    def send(self, channel: str, body: str, *, delay_seconds: int = 0) -> None: ...


class DelayedSends:
    """The senders' follow-up queue under the simulated clock: SQS ``DelaySeconds`` on simulated time.

    moto delays messages on the wall clock, so a job a worker puts back with ``DelaySeconds=600``
    would stay invisible for ten real minutes. Here the request is made when the simulated delay
    has passed (with no delay); jobs without a delay go straight through.
    """

    def __init__(self, inner: JobQueues, clock: SimulatedClock) -> None:
        self._inner = inner
        self._clock = clock
        self._pending: list[tuple[datetime, int, str, str]] = []
        self._sequence = 0
        self._lock = threading.Lock()
        self.delayed = 0

    def send(self, channel: str, body: str, *, delay_seconds: int = 0) -> None:
        if delay_seconds <= 0:
            self._inner.send(channel, body)
            return
        with self._lock:
            self._sequence += 1
            due = self._clock.now() + timedelta(seconds=delay_seconds)
            heapq.heappush(self._pending, (due, self._sequence, channel, body))
            self.delayed += 1

    def next_due(self) -> datetime | None:
        with self._lock:
            return self._pending[0][0] if self._pending else None

    def release_due(self) -> int:
        """Enqueue every job whose delay has passed; returns how many."""
        now = self._clock.now()
        ready: list[tuple[str, str]] = []
        with self._lock:
            while self._pending and self._pending[0][0] <= now:
                _, _, channel, body = heapq.heappop(self._pending)
                ready.append((channel, body))
        for channel, body in ready:
            self._inner.send(channel, body)
        return len(ready)
