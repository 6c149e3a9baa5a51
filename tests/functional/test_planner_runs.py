"""Run and release records in template.yaml's StateTable under moto: the conditional put is the no-op guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from funnelcast.planning.runs import DynamoRunRecords

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)


def test_claim_is_exclusive_until_failed_or_the_lease_runs_out(aws: Any) -> None:
    # Given the StateTable
    runs = DynamoRunRecords(aws.names["StateTable"], dynamodb_client=aws.client("dynamodb"))
    # When two invocations claim the same run, only the first gets it
    assert runs.claim("c@20261201T0100Z", now=NOW, lease=LEASE, leader="c@20261201T0100Z")
    assert not runs.claim("c@20261201T0100Z", now=NOW + timedelta(minutes=1), lease=LEASE, leader="x")
    # And a planner that died mid-run is taken over once its lease ran out
    assert runs.claim("c@20261201T0100Z", now=NOW + timedelta(minutes=16), lease=LEASE, leader="y")
    # And a done run stays done, a failed run can be claimed again
    runs.finish("c@20261201T0100Z", now=NOW, status="done", counts={"queued": 3})
    assert not runs.claim("c@20261201T0100Z", now=NOW + timedelta(days=1), lease=LEASE, leader="z")
    runs.claim("d@20261201T0100Z", now=NOW, lease=LEASE, leader="d")
    runs.finish("d@20261201T0100Z", now=NOW, status="failed", counts={}, error="SnapshotMissingError")
    assert runs.claim("d@20261201T0100Z", now=NOW + timedelta(minutes=1), lease=LEASE, leader="d")
    item = aws.client("dynamodb").get_item(
        TableName=aws.names["StateTable"], Key={"pk": {"S": "run#c@20261201T0100Z"}, "sk": {"S": "run"}}
    )["Item"]
    assert (item["status"]["S"], item["counts"]["S"], "expires_at" in item) == ("done", '{"queued": 3}', True)


def test_release_records(aws: Any) -> None:
    runs = DynamoRunRecords(aws.names["StateTable"], dynamodb_client=aws.client("dynamodb"))
    key = "waiting/c@20261201T0100Z/20261201T1400Z.json"
    assert not runs.released(key)
    runs.mark_released(key, now=NOW, jobs=2)
    assert runs.released(key)
