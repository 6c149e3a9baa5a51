"""SQS adapter for send jobs: ``SendMessageBatch`` of up to 10 bodies, within the request size limit.

Costs are the point: the planner sends 1,000 recipients as 10 jobs in 1-2 requests. Failed entries of
a batch are retried (only those) a few times; what still fails raises :class:`QueueError` naming the
job ids, never lost silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from funnelcast.aws.clients import client, error_code
from funnelcast.errors import QueueError

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
MAX_ATTEMPTS = 3


def _job_id(body: str) -> str:
    try:
        return str(json.loads(body).get("job_id", "?"))
    except ValueError:
        return "?"


def batches(
    bodies: Sequence[str], *, max_entries: int = MAX_BATCH_ENTRIES, max_bytes: int = MAX_BATCH_BYTES
) -> list[list[str]]:
    """Consecutive groups of at most ``max_entries`` bodies whose UTF-8 sizes sum to at most ``max_bytes``."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if length > max_bytes:
            raise QueueError(f"job {_job_id(body)} is {length} bytes, over the SQS limit of {max_bytes}")
        if current and (len(current) == max_entries or size + length > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(body)
        size += length
    if current:
        groups.append(current)
    return groups


class JobQueue:
    """The per-channel job queues. ``queue_url`` maps a channel to its URL (e.g. ``Settings.queue_url``).

    ``requests`` counts the SQS requests this adapter made (the planner reports it; tests bound it).
    """

    def __init__(self, queue_url: Callable[[str], str] | Mapping[str, str], *, sqs_client: Any = None) -> None:
        self._queue_url = queue_url
        self._client = sqs_client
        self.requests = 0

    @property
    def _sqs(self) -> Any:
        return self._client if self._client is not None else client("sqs")

    def url(self, channel: str) -> str:
        if callable(self._queue_url):
            return self._queue_url(channel)
        try:
            return self._queue_url[channel]
        except KeyError:
            raise QueueError(f"no queue URL configured for channel {channel!r}") from None

    def send_jobs(self, channel: str, bodies: Sequence[str]) -> int:
        """Enqueue every body on ``channel``'s queue; returns how many SQS requests it took."""
        if not bodies:
            return 0
        url = self.url(channel)
        used = 0
        for group in batches(bodies):
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(group)]
            for attempt in range(1, MAX_ATTEMPTS + 1):
                used += 1
                self.requests += 1
                try:
                    response = self._sqs.send_message_batch(QueueUrl=url, Entries=entries)
                except Exception as exc:
                    raise QueueError(f"cannot enqueue {len(entries)} {channel} jobs: {error_code(exc) or exc}") from exc
                failed = {item["Id"] for item in response.get("Failed", [])}
                if not failed:
                    break
                entries = [entry for entry in entries if entry["Id"] in failed]
                if attempt == MAX_ATTEMPTS:
                    reasons = sorted({str(item.get("Code", "?")) for item in response.get("Failed", [])})
                    ids = [_job_id(entry["MessageBody"]) for entry in entries]
                    raise QueueError(f"{channel} jobs {ids} not enqueued after {MAX_ATTEMPTS} attempts: {reasons}")
        return used

    def send(self, channel: str, body: str, *, delay_seconds: int = 0) -> None:
        """One job (the senders' ``JobQueues`` protocol, for follow-ups)."""
        self.requests += 1
        try:
            self._sqs.send_message(QueueUrl=self.url(channel), MessageBody=body, DelaySeconds=delay_seconds)
        except Exception as exc:
            raise QueueError(f"cannot enqueue a {channel} job: {error_code(exc) or exc}") from exc
