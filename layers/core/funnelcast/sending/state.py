"""Send states for at-most-once delivery (SPEC §3), one StateTable item per send id.

``claim`` is a conditional put made BEFORE the provider call; ``finish_all`` records the outcomes of
a job's sends at once (BatchWriteItem, 25 per request) once their provider calls are over. The
item moves through:

- ``in_flight`` (with ``lease_until``): a worker is calling the provider now;
- ``done`` / ``failed`` / ``unknown``: final, a redelivered message never sends again;
- ``released``: nothing went out (retryable error): any worker of the same channel may claim again;
- ``handed_off`` (with ``channel``): the channel refused, the fallback channel may claim.

An ``in_flight`` item past its lease means a worker died mid-call: the send is ambiguous and is
recorded ``unknown``, never resent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from funnelcast.aws.clients import client, error_code
from funnelcast.errors import FunnelcastError
from funnelcast.sending.retry import RetryPolicy

ClaimStatus = Literal["claimed", "done", "in_flight", "expired", "handed_off"]
FINAL_STATES = frozenset({"done", "failed", "unknown"})
STATE_RETENTION = timedelta(days=35)  # longer than any SQS retention + DLQ replay
BATCH_WRITE_LIMIT = 25
BATCH_RETRY = RetryPolicy(attempts=8, base_seconds=0.05, cap_seconds=1.0)  # unprocessed items: throttling


class SendStateError(FunnelcastError):
    """The state table could not be read or written."""


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    state: str = ""


@dataclass(frozen=True)
class FinalState:
    """Where a send stands after its provider call: ``state`` on ``channel`` (for ``handed_off``, the
    channel that may claim it next)."""

    send_id: str
    state: str
    channel: str


class SendStates(Protocol):
    def claim(self, send_id: str, channel: str, now: datetime, lease: timedelta) -> Claim: ...
    def finish_all(self, finals: Sequence[FinalState], now: datetime) -> None: ...


def _key(send_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"send#{send_id}"}, "sk": {"S": "state"}}


class DynamoSendStates:
    """``SendStates`` on the StateTable (pk ``send#<id>``, sk ``state``, TTL ``expires_at``)."""

    def __init__(self, table_name: str, *, dynamodb_client: Any = None, retry: RetryPolicy = BATCH_RETRY) -> None:
        self.table_name = table_name
        self._client = dynamodb_client
        self._retry = retry

    @property
    def _ddb(self) -> Any:
        return self._client if self._client is not None else client("dynamodb")

    def claim(self, send_id: str, channel: str, now: datetime, lease: timedelta) -> Claim:
        item = {
            **_key(send_id),
            "state": {"S": "in_flight"},
            "channel": {"S": channel},
            "lease_until": {"N": str(int((now + lease).timestamp()))},
            "updated_at": {"S": now.isoformat()},
            "expires_at": {"N": str(int((now + STATE_RETENTION).timestamp()))},
        }
        try:
            self._ddb.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=(
                    "attribute_not_exists(pk) OR #s = :released OR (#s = :handed_off AND #c = :channel)"
                ),
                ExpressionAttributeNames={"#s": "state", "#c": "channel"},
                ExpressionAttributeValues={
                    ":released": {"S": "released"},
                    ":handed_off": {"S": "handed_off"},
                    ":channel": {"S": channel},
                },
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise SendStateError(f"cannot claim send {send_id}: {error_code(exc) or exc}") from exc
        else:
            return Claim("claimed")
        try:
            current = self._ddb.get_item(TableName=self.table_name, Key=_key(send_id), ConsistentRead=True)
        except Exception as exc:
            raise SendStateError(f"cannot read send {send_id}: {error_code(exc) or exc}") from exc
        existing = current.get("Item", {})
        state = existing.get("state", {}).get("S", "")
        lease_until = int(existing.get("lease_until", {}).get("N", "0"))
        return _classify(state, lease_until, now)

    def finish_all(self, finals: Sequence[FinalState], now: datetime) -> None:
        """Write every final state, whole items without condition: only the claim holder finishes.

        Unprocessed items (throttling) are retried with backoff; raises :class:`SendStateError` when
        the table refuses the batch or keeps items unprocessed.
        """
        latest = {final.send_id: final for final in finals}  # one key may appear once per batch
        requests = [{"PutRequest": {"Item": self._final_item(final, now)}} for final in latest.values()]
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._batch_write(requests[start : start + BATCH_WRITE_LIMIT])

    def _final_item(self, final: FinalState, now: datetime) -> dict[str, Any]:
        return {
            **_key(final.send_id),
            "state": {"S": final.state},
            "channel": {"S": final.channel},
            "updated_at": {"S": now.isoformat()},
            "expires_at": {"N": str(int((now + STATE_RETENTION).timestamp()))},
        }

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending = requests
        for attempt in range(self._retry.attempts):
            try:
                answer = self._ddb.batch_write_item(RequestItems={self.table_name: pending})
            except Exception as exc:
                raise SendStateError(
                    f"cannot record {len(pending)} send states in {self.table_name}: {error_code(exc) or exc}"
                ) from exc
            pending = answer.get("UnprocessedItems", {}).get(self.table_name, [])
            if not pending:
                return
            self._retry.sleep(self._retry.delay(attempt))
        ids = [r["PutRequest"]["Item"]["pk"]["S"] for r in pending]
        raise SendStateError(f"{len(ids)} send states stayed unprocessed in {self.table_name}: {', '.join(ids[:5])}")


def _classify(state: str, lease_until: int, now: datetime) -> Claim:
    if state in FINAL_STATES:
        return Claim("done", state)
    if state == "handed_off":
        return Claim("handed_off", state)
    if state == "in_flight" and lease_until <= int(now.timestamp()):
        return Claim("expired", state)
    return Claim("in_flight", state)


class MemorySendStates:
    """``SendStates`` in a dict, for unit tests and the demo's fast path."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def claim(self, send_id: str, channel: str, now: datetime, lease: timedelta) -> Claim:
        with self._lock:
            item = self.items.get(send_id)
            free = (
                item is None
                or item["state"] == "released"
                or (item["state"] == "handed_off" and item["channel"] == channel)
            )
            if free:
                self.items[send_id] = {
                    "state": "in_flight",
                    "channel": channel,
                    "lease_until": int((now + lease).timestamp()),
                }
                return Claim("claimed")
            assert item is not None
            return _classify(item["state"], item["lease_until"], now)

    def finish_all(self, finals: Sequence[FinalState], now: datetime) -> None:
        del now
        with self._lock:
            for final in finals:
                self.items[final.send_id] = {"state": final.state, "channel": final.channel, "lease_until": 0}
