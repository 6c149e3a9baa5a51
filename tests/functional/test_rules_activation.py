"""Rules activation under moto: a good upload activates, a bad one keeps the previous active set."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from funnelcast.activation import ACTIVE_KEY, activate_rules, load_active_ruleset, load_ruleset_bundle, report_key
from funnelcast.aws.clients import client
from funnelcast.rules.models import RuleSet
from funnelcast.settings import get_settings
from funnelcast.storage import S3Store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "segment_rules"
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
BUCKET = "funnelcast-rules-test"


@pytest.fixture
def rules_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    """An empty moto rules bucket, with the function environment pointing at it."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
        "RULES_BUCKET": BUCKET,
        "POWERTOOLS_METRICS_NAMESPACE": "funnelcast",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    client.cache_clear()
    get_settings.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name="ap-northeast-2")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"})
        yield S3Store(BUCKET, "", s3)
    client.cache_clear()
    get_settings.cache_clear()


def upload_examples(store: S3Store) -> None:
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        store.put_bytes(f"incoming/{path.relative_to(EXAMPLES)}", path.read_bytes())


def s3_put_event(key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "ap-northeast-2",
                "eventTime": "2026-12-01T01:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                    "object": {"key": key, "size": 10, "eTag": "x", "sequencer": "0"},
                },
            }
        ]
    }


def test_good_upload_activates_and_bad_upload_keeps_previous(rules_bucket: S3Store) -> None:
    # Given the example rule set uploaded under incoming/
    upload_examples(rules_bucket)
    activated: list[RuleSet] = []
    # When activation runs
    first = activate_rules(rules_bucket, "incoming/policy.yaml", now=NOW, on_activated=[activated.append])
    # Then the bundle exists, active.json points at it and the callback saw the same rule set
    assert first.activated
    assert first.rules_hash is not None
    assert first.segments == 10
    assert "cart_recovery" in first.campaigns
    pointer = json.loads(rules_bucket.get_bytes(ACTIVE_KEY))
    assert pointer["rules_hash"] == first.rules_hash
    assert pointer["bundle_key"] == f"rulesets/{first.rules_hash}/bundle.json"
    assert load_active_ruleset(rules_bucket).rules_hash == first.rules_hash
    assert [r.rules_hash for r in activated] == [first.rules_hash]

    # Given a broken segment is uploaded next to the good files
    rules_bucket.put_bytes("incoming/segments/broken.yaml", b"kind: segment\nid: broken\nname: x\nwher: {}\n")
    before = rules_bucket.get_bytes(ACTIVE_KEY)
    # When activation runs again
    second = activate_rules(rules_bucket, "incoming/segments/broken.yaml", now=NOW, on_activated=[activated.append])
    # Then nothing moved, the report lists the problem with its position, and no callback ran
    assert not second.activated
    assert rules_bucket.get_bytes(ACTIVE_KEY) == before
    report = json.loads(rules_bucket.get_bytes(report_key("incoming/segments/broken.yaml")))
    assert any(p.startswith("incoming/segments/broken.yaml:4:1: unknown key 'wher'") for p in report["problems"])
    assert len(activated) == 1


def test_handler_activates_from_s3_event(rules_bucket: S3Store) -> None:
    # Given the examples in the bucket and the handler importable side by side with others
    upload_examples(rules_bucket)
    sys.path.insert(0, str(ROOT / "functions" / "activate_rules"))
    try:
        import activate_rules as handler_module
    finally:
        sys.path.pop(0)

    class Context:
        function_name = "ActivateRulesFunction"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:ActivateRulesFunction"
        aws_request_id = "req-1"

    # When S3 reports an upload with a URL-encoded key
    result = handler_module.lambda_handler(s3_put_event("incoming/campaigns/cart_recovery.yaml"), Context())
    # Then the rule set became active and the bundle loads back to the same hash
    (outcome,) = result["results"]
    assert outcome["activated"] is True
    bundle = load_ruleset_bundle(rules_bucket, outcome["rules_hash"])
    assert bundle.rules_hash == outcome["rules_hash"]


def test_no_active_set_is_a_clear_error(rules_bucket: S3Store) -> None:
    # Given an empty bucket / When the active set is read / Then the error says to upload rules
    from funnelcast.errors import RuleError

    with pytest.raises(RuleError, match="no rule set is active yet"):
        load_active_ruleset(rules_bucket)


def test_non_rule_upload_is_reported_not_ignored(rules_bucket: S3Store) -> None:
    # Given an active example set and then a stray spreadsheet uploaded under incoming/
    upload_examples(rules_bucket)
    assert activate_rules(rules_bucket, "incoming/policy.yaml", now=NOW).activated
    before = rules_bucket.get_bytes(ACTIVE_KEY)
    rules_bucket.put_bytes("incoming/segments.xlsx", b"PK\x03\x04")
    # When activation runs for it
    result = activate_rules(rules_bucket, "incoming/segments.xlsx", now=NOW)
    # Then it is rejected with a report and the active set is unchanged
    assert not result.activated
    assert result.problems == ["incoming/segments.xlsx:1:1: not a rule file: rule files end in .yaml or .yml"]
    assert rules_bucket.exists(report_key("incoming/segments.xlsx"))
    assert rules_bucket.get_bytes(ACTIVE_KEY) == before
