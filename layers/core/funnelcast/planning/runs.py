"""Run records in the StateTable: a conditional put per run makes a re-invoked planner a no-op.

Item ``pk = run#<run_id>``, ``sk = run``: ``status`` (``planning`` -> ``done`` | ``failed``), the
leader run that planned it (the first invocation of a slot plans every campaign due in it), a lease
(a planner that died mid-run is taken over once the lease ran out), counts, the error of a failed run.
A ``failed`` run may be claimed again (a retry, or the next firing of the same minute).
Released waiting batches get ``pk = release#<key>`` so a second release is a no-op.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from funnelcast.aws.clients import client, error_code
from funnelcast.errors import FunnelcastError

RETENTION = timedelta(days=90)
_CONDITION_FAILED = "ConditionalCheckFailedException"


class RunRecordError(FunnelcastError):
    """The StateTable could not be read or written for a run record."""


class RunLedger(Protocol):
    """What the planner needs from run records (DynamoDB in Lambda, memory in unit tests)."""

    def claim(self, run_id: str, *, now: datetime, lease: timedelta, leader: str) -> bool: ...
    def finish(self, run_id: str, *, now: datetime, status: str, counts: dict[str, Any], error: str = "") -> None: ...
    def released(self, key: str) -> bool: ...
    def mark_released(self, key: str, *, now: datetime, jobs: int) -> None: ...


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class DynamoRunRecords:
    """Run and release records in the StateTable (pk ``pk``, sk ``sk``, TTL ``expires_at``)."""

    def __init__(self, table_name: str, *, dynamodb_client: Any = None) -> None:
        self.table_name = table_name
        self._client = dynamodb_client

    @property
    def _ddb(self) -> Any:
        return self._client if self._client is not None else client("dynamodb")

    def claim(self, run_id: str, *, now: datetime, lease: timedelta, leader: str) -> bool:
        """Take the run: True when this invocation plans it, False when it is done or being planned."""
        item = {
            "pk": {"S": f"run#{run_id}"},
            "sk": {"S": "run"},
            "status": {"S": "planning"},
            "leader": {"S": leader},
            "claimed_at": {"S": now.isoformat()},
            "lease_until": {"N": str(_epoch(now + lease))},
            "expires_at": {"N": str(_epoch(now + RETENTION))},
        }
        try:
            self._ddb.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=(
                    "attribute_not_exists(pk) OR #s = :failed OR (#s = :planning AND lease_until < :now)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":failed": {"S": "failed"},
                    ":planning": {"S": "planning"},
                    ":now": {"N": str(_epoch(now))},
                },
            )
        except Exception as exc:
            if error_code(exc) == _CONDITION_FAILED:
                return False
            raise RunRecordError(f"cannot claim run {run_id} in {self.table_name}: {error_code(exc) or exc}") from exc
        return True

    def finish(self, run_id: str, *, now: datetime, status: str, counts: dict[str, Any], error: str = "") -> None:
        try:
            self._ddb.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": f"run#{run_id}"}, "sk": {"S": "run"}},
                UpdateExpression="SET #s = :status, finished_at = :at, counts = :counts, #e = :error",
                ExpressionAttributeNames={"#s": "status", "#e": "error"},
                ExpressionAttributeValues={
                    ":status": {"S": status},
                    ":at": {"S": now.isoformat()},
                    ":counts": {"S": json.dumps(counts, sort_keys=True, default=str)},
                    ":error": {"S": error},
                },
            )
        except Exception as exc:
            raise RunRecordError(f"cannot record run {run_id} as {status}: {error_code(exc) or exc}") from exc

    def released(self, key: str) -> bool:
        try:
            response = self._ddb.get_item(
                TableName=self.table_name,
                Key={"pk": {"S": f"release#{key}"}, "sk": {"S": "release"}},
                ConsistentRead=True,
            )
        except Exception as exc:
            raise RunRecordError(f"cannot read the release record of {key}: {error_code(exc) or exc}") from exc
        return "Item" in response

    def mark_released(self, key: str, *, now: datetime, jobs: int) -> None:
        try:
            self._ddb.put_item(
                TableName=self.table_name,
                Item={
                    "pk": {"S": f"release#{key}"},
                    "sk": {"S": "release"},
                    "released_at": {"S": now.isoformat()},
                    "jobs": {"N": str(jobs)},
                    "expires_at": {"N": str(_epoch(now + RETENTION))},
                },
            )
        except Exception as exc:
            raise RunRecordError(f"cannot record the release of {key}: {error_code(exc) or exc}") from exc


@dataclass
class MemoryRunRecords:
    """The same semantics in memory (unit tests, the local CLI)."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    releases: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def claim(self, run_id: str, *, now: datetime, lease: timedelta, leader: str) -> bool:
        with self._lock:
            record = self.runs.get(run_id)
            if record is not None and not (
                record["status"] == "failed" or (record["status"] == "planning" and record["lease_until"] < now)
            ):
                return False
            self.runs[run_id] = {"status": "planning", "leader": leader, "lease_until": now + lease}
            return True

    def finish(self, run_id: str, *, now: datetime, status: str, counts: dict[str, Any], error: str = "") -> None:
        with self._lock:
            self.runs[run_id] = {**self.runs.get(run_id, {}), "status": status, "counts": counts, "error": error}

    def released(self, key: str) -> bool:
        return key in self.releases

    def mark_released(self, key: str, *, now: datetime, jobs: int) -> None:
        self.releases[key] = jobs
