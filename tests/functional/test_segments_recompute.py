"""RecomputeSegmentsFunction under moto: S3 data in, versioned snapshot out, latest.json moved last."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from funnelcast.activation import activate_rules
from funnelcast.data.generate import generate, write_dataset
from funnelcast.data.load import load_dataset
from funnelcast.errors import StorageError
from funnelcast.local.aws_env import LocalAws
from funnelcast.rules.models import RuleSet
from funnelcast.segments.engine import compute_segments
from funnelcast.segments.plan import data_needs
from funnelcast.segments.service import RecomputeDependencies
from funnelcast.segments.snapshot import LATEST_KEY, load_latest_snapshot, snapshot_prefix
from funnelcast.storage import ObjectStore, S3Store, open_store

ROOT = Path(__file__).resolve().parents[2]
END = datetime(2026, 12, 1, tzinfo=UTC)
FIRST = END
SECOND = END + timedelta(hours=1)


class Context:
    function_name = "RecomputeSegmentsFunction"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:RecomputeSegmentsFunction"
    aws_request_id = "req-segments"


@pytest.fixture
def handler(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The handler module with fresh per-container dependencies."""
    monkeypatch.syspath_prepend(str(ROOT / "functions" / "recompute_segments"))
    module = importlib.import_module("recompute_segments")
    module._deps.clear()
    yield module
    module._deps.clear()


@pytest.fixture
def staged(aws: LocalAws) -> RuleSet:
    """Given the example rule set active in the rules bucket and generated data under DATA_PREFIX."""
    settings = aws.settings
    rules = S3Store(settings.rules_bucket, "", aws.client("s3"))
    for path in sorted((ROOT / "segment_rules").rglob("*.yaml")):
        rules.put_bytes(f"incoming/{path.relative_to(ROOT / 'segment_rules')}", path.read_bytes())
    result = activate_rules(rules, "incoming/policy.yaml", now=END)
    assert result.activated, result.problems
    customers, events = generate(300, 5_000, seed=4, end=END, days=30)
    write_dataset(data_root(aws), customers, events, "parquet")
    from funnelcast.activation import load_active_ruleset

    return load_active_ruleset(rules)


def data_root(aws: LocalAws) -> ObjectStore:
    return open_store(f"s3://{aws.settings.data_bucket}/{aws.settings.data_prefix}", aws.client("s3"))


def bucket_root(aws: LocalAws) -> ObjectStore:
    return open_store(f"s3://{aws.settings.data_bucket}", aws.client("s3"))


def test_handler_writes_snapshot_from_s3_data(
    aws: LocalAws, staged: RuleSet, handler: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given also an exported file with a row that has no user_id
    data_root(aws).put_bytes(
        "events/dt=2026-11-30/late.csv", b"user_id,ts,event_type\n,2026-11-30T01:00:00Z,app_open\n"
    )
    # When the recompute function is invoked on demand for T
    result = handler.lambda_handler({"at": FIRST.isoformat()}, Context())
    # Then the bad row is quarantined beside the data and counted, and the run went on
    assert result["quarantined"] == {"events: null user_id": 1}
    assert data_root(aws).exists(f"_quarantine/{result['run_id']}/events.parquet")
    # Then every segment's size and the run's duration went out as EMF metrics
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    sizes = {blob["segment"]: int(*blob["SegmentSize"]) for blob in blobs if "SegmentSize" in blob}
    assert sizes == result["counts"]
    assert any("RecomputeSeconds" in blob for blob in blobs)
    # Then the snapshot is under segments/<T>/<hash>/ and latest.json points at it
    prefix = snapshot_prefix(FIRST, staged.rules_hash)
    assert result["snapshot"] == prefix
    snapshot = load_latest_snapshot(bucket_root(aws))
    assert snapshot.prefix == prefix
    assert snapshot.rules_hash == staged.rules_hash
    assert snapshot.at == FIRST
    # And its membership is what the engine computes on the same data read directly
    dataset = load_dataset(data_root(aws), data_needs(staged, FIRST), run_id="check")
    expected = compute_segments(staged, dataset, FIRST)
    assert snapshot.manifest["counts"] == expected.counts == result["counts"]
    assert len(snapshot.membership) == sum(expected.counts.values())
    assert any(size > 0 for segment, size in expected.counts.items() if not segment.startswith("@"))
    # And features carry one row per customer with RFM scores
    assert len(snapshot.features) == 300
    assert {"rfm_r", "rfm_f", "rfm_m", "rfm_code"} <= set(snapshot.features.columns)


def test_crash_before_pointer_move_keeps_the_old_snapshot(
    aws: LocalAws, staged: RuleSet, handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a first complete snapshot
    handler.lambda_handler({"at": FIRST.isoformat()}, Context())
    pointer_before = bucket_root(aws).get_bytes(LATEST_KEY)
    # And S3 failing on the second run's last snapshot file (the manifest, written before the pointer)
    real_put = S3Store.put_bytes

    def failing_put(self: S3Store, key: str, body: bytes, *, if_absent: bool = False) -> None:
        if key.endswith(snapshot_prefix(SECOND, staged.rules_hash) + "manifest.json"):
            raise StorageError(f"simulated crash writing {key}")
        real_put(self, key, body, if_absent=if_absent)

    monkeypatch.setattr(S3Store, "put_bytes", failing_put)
    # When the second run crashes
    with pytest.raises(StorageError, match="simulated crash"):
        handler.lambda_handler({"source": "schedule", "scheduled_time": SECOND.isoformat()}, Context())
    # Then latest.json is unchanged and readers still get the first snapshot, although parts of the
    # second were written
    assert bucket_root(aws).get_bytes(LATEST_KEY) == pointer_before
    assert load_latest_snapshot(bucket_root(aws)).at == FIRST
    assert bucket_root(aws).exists(snapshot_prefix(SECOND, staged.rules_hash) + "membership.parquet")
    # And a retry that succeeds moves the pointer and counts changes against the first snapshot
    monkeypatch.setattr(S3Store, "put_bytes", real_put)
    result = handler.lambda_handler({"source": "schedule", "scheduled_time": SECOND.isoformat()}, Context())
    snapshot = load_latest_snapshot(bucket_root(aws))
    assert snapshot.at == SECOND == datetime.fromisoformat(result["at"])
    changes = snapshot.manifest["changes"]
    assert set(changes) >= set(snapshot.manifest["counts"])
    first = json.loads(bucket_root(aws).get_bytes(snapshot_prefix(FIRST, staged.rules_hash) + "manifest.json"))
    for segment, size in snapshot.manifest["counts"].items():
        # size now = size before + entered - exited, segment by segment
        assert size == first["counts"][segment] + changes[segment]["entered"] - changes[segment]["exited"]


def test_scheduled_event_without_time_uses_the_clock_minute(aws: LocalAws, staged: RuleSet, handler: Any) -> None:
    # Given a container whose clock reads 01:00:42 (the Scheduler input carries no time)
    deps = RecomputeDependencies.from_settings(aws.settings, clock=lambda: SECOND + timedelta(seconds=42))
    handler._deps["deps"] = deps
    # When the schedule fires
    result = handler.lambda_handler({"source": "schedule"}, Context())
    # Then T is the minute, and the snapshot is named after it
    assert datetime.fromisoformat(result["at"]) == SECOND
    assert result["snapshot"] == snapshot_prefix(SECOND, staged.rules_hash)


def test_unknown_event_keys_are_rejected(aws: LocalAws, handler: Any) -> None:
    # Given an event with a typo / When invoked / Then validation names the key, nothing is written
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="sheduled_time"):
        handler.lambda_handler({"sheduled_time": FIRST.isoformat()}, Context())
    assert not bucket_root(aws).exists(LATEST_KEY)
