"""Send states for at-most-once delivery (SPEC §3), one StateTable item per send id.

``claim`` is a conditional put made BEFORE the provider call. The item moves through:

- ``in_flight`` (with ``lease_until``): a worker is calling the provider now;
- ``done`` / ``failed`` / ``unknown``: final, a redelivered message never sends again;
- ``released``: nothing went out (retryable error): any worker of the same channel may claim again;
- ``handed_off`` (with ``channel``): the channel refused, the fallback channel may claim.

An ``in_flight`` item past its lease means a worker died mid-call: the send is ambiguous and is
recorded ``unknown``, never resent.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from funnelcast.aws.clients import client, error_code
from funnelcast.errors import FunnelcastError

ClaimStatus = Literal["claimed", "done", "in_flight", "expired", "handed_off"]
FINAL_STATES = frozenset({"done", "failed", "unknown"})
STATE_RETENTION = timedelta(days=35)  # longer than any SQS retention + DLQ replay


class SendStateError(FunnelcastError):
    """The state table could not be read or written."""


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    state: str = ""


class SendStates(Protocol):
    def claim(self, send_id: str, channel: str, now: datetime, lease: timedelta) -> Claim: ...
    def finish(self, send_id: str, state: str, now: datetime, *, channel: str = "") -> None: ...


def _key(send_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"send#{send_id}"}, "sk": {"S": "state"}}


class DynamoSendStates:
    """``SendStates`` on the StateTable (pk ``send#<id>``, sk ``state``, TTL ``expires_at``)."""

    def __init__(self, table_name: str, *, dynamodb_client: Any = None) -> None:
        self.table_name = table_name
        self._client = dynamodb_client

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

    def finish(self, send_id: str, state: str, now: datetime, *, channel: str = "") -> None:
        names = {"#s": "state", "#u": "updated_at"}
        values: dict[str, Any] = {":s": {"S": state}, ":u": {"S": now.isoformat()}}
        update = "SET #s = :s, #u = :u"
        if channel:
            names["#c"] = "channel"
            values[":c"] = {"S": channel}
            update += ", #c = :c"
        try:
            self._ddb.update_item(
                TableName=self.table_name,
                Key=_key(send_id),
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            raise SendStateError(f"cannot mark send {send_id} {state}: {error_code(exc) or exc}") from exc


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

    def finish(self, send_id: str, state: str, now: datetime, *, channel: str = "") -> None:
        with self._lock:
            item = self.items.setdefault(send_id, {"state": state, "channel": channel, "lease_until": 0})
            item["state"] = state
            if channel:
                item["channel"] = channel
