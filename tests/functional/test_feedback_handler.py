"""The ingest_feedback Lambda under moto with template.yaml's resources: SES events published to the
SNS topic reach the FeedbackQueue and the handler; vendors and unsubscribe links hit the Function URL."""

from __future__ import annotations

import base64
import importlib
import io
import json
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from funnelcast.feedback.ingest import UNKNOWN_KEY, read_events
from funnelcast.feedback.suppression import SUPPRESSION_KEY, rebuild_suppression
from funnelcast.rules.models import Policy, RuleSet, Suppression
from funnelcast.sending.compliance import sign_send_id
from funnelcast.storage import S3Store

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "feedback"))
from feedback_payloads import opt_out, ses_record, sign, vendor_body, vendor_report  # noqa: E402

CONTEXT = types.SimpleNamespace(
    function_name="ingest-feedback",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:ap-northeast-2:123456789012:function:ingest-feedback",
    aws_request_id="req-1",
)
PHONE = "+821055512345"


def delivery(send_id: str, user_id: int, channel: str) -> dict[str, Any]:
    return {
        "send_id": send_id,
        "run_id": "promo@20261102T0100Z",
        "campaign_id": "promo",
        "user_id": user_id,
        "variant_id": "a",
        "channel": channel,
        "status": "sent",
        "reason": "",
        "sent_at": "2026-11-02T01:00:00+00:00",
        "local_sent_at": "2026-11-02T10:00:00+09:00",
        "purpose": "advertising",
        "topic": "promo",
    }


@pytest.fixture
def handler(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """Given the function's environment, an active rule set and two sent messages (email to 7, SMS to 8)."""
    for name, value in aws.function_env("IngestFeedbackFunction").items():
        monkeypatch.setenv(name, value)
    ruleset = RuleSet(campaigns=[], policy=Policy(kind="policy"))
    rules = S3Store(aws.names["RulesBucket"])
    rules.put_bytes(f"rulesets/{ruleset.rules_hash}/bundle.json", ruleset.canonical_json())
    rules.put_bytes("active.json", json.dumps({"rules_hash": ruleset.rules_hash}).encode())
    rows = [delivery("m1", 7, "email"), delivery("s1", 8, "sms")]
    S3Store(aws.names["DataBucket"]).put_bytes(
        "deliveries/dt=2026-11-02/email-x.jsonl", "\n".join(json.dumps(r) for r in rows).encode()
    )
    monkeypatch.syspath_prepend(str(ROOT / "functions" / "ingest_feedback"))
    module = importlib.import_module("ingest_feedback")
    module._deps.clear()
    yield module
    module._deps.clear()


def queue_event(aws: Any, *records: dict[str, Any], raw_bodies: tuple[str, ...] = ()) -> dict[str, Any]:
    """Publish SES records to the SES events topic, add raw bodies, and receive them as Lambda's SQS event."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    url = aws.names["FeedbackQueue"]
    for record in records:
        sns.publish(TopicArn=aws.names["SesEventsTopic"], Message=json.dumps(record))
    for body in raw_bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(received) == len(records) + len(raw_bodies)
    arn = f"arn:aws:sqs:{aws.region}:{aws.account_id}:{url.rsplit('/', 1)[1]}"
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": aws.region,
            }
            for m in received
        ]
    }


def url_event(
    method: str, body: bytes = b"", *, headers: dict[str, str] | None = None, query: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Function URL (payload 2.0) request; vendors' bodies arrive base64-encoded."""
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": headers or {},
        "queryStringParameters": query,
        "requestContext": {"http": {"method": method, "path": "/", "sourceIp": "203.0.113.7"}},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def data(aws: Any) -> S3Store:
    return S3Store(aws.names["DataBucket"])


def suppression(aws: Any) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data(aws).get_bytes(SUPPRESSION_KEY)))


def test_ses_unsubscribe_through_the_queue_lands_in_the_suppression_snapshot(
    aws: Any, handler: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # When SES publishes a delivery, the same delivery again, and an opt-out, plus a poison message
    event = queue_event(
        aws,
        ses_record("Delivery", "m1", "2026-11-02T01:00:02Z"),
        ses_record("Delivery", "m1", "2026-11-02T01:00:02Z"),
        opt_out("m1", "2026-11-02T05:00:00Z"),
        raw_bodies=("{not json",),
    )
    poison = next(r["messageId"] for r in event["Records"] if r["body"] == "{not json")
    response = handler.lambda_handler(event, CONTEXT)
    # Then only the poison message is reported failed (it retries, then the FeedbackDLQ)
    assert response == {"batchItemFailures": [{"itemIdentifier": poison}]}
    # And the duplicate delivery counts once
    events = read_events(data(aws))
    assert sorted(events["type"]) == ["delivered", "unsubscribed"]
    # And user 7's email consent is off in suppression/latest.parquet, which the planner reads
    snapshot = suppression(aws)
    assert snapshot[["user_id", "channel", "reason"]].to_dict("records") == [
        {"user_id": "7", "channel": "email", "reason": "unsubscribe:channel"}
    ]
    assert snapshot["topic"].isna().all()
    # And EMF metrics were printed for CloudWatch
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Feedback_delivered", "Feedback_unsubscribed", "FeedbackRejected", "SuppressionRows"} <= names


def test_signed_vendor_report_via_function_url_uses_the_ssm_secret(aws: Any, handler: types.ModuleType) -> None:
    # Given the shared secret the stack keeps in SSM, When a vendor posts a signed SMS opt-out report
    secret = aws.secrets[aws.env["FEEDBACK_SECRET_PARAMETER"]].encode()
    body = vendor_body(
        vendor_report("r-1", "s1", "delivered", "2026-11-02T01:00:03Z"),
        vendor_report("r-2", "s1", "unsubscribed", "2026-11-02T02:00:00Z"),
    )
    response = handler.lambda_handler(
        url_event("POST", body, headers={"X-Funnelcast-Signature": sign(body, secret)}), CONTEXT
    )
    # Then 200, both stored, and user 8's SMS consent is off
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"accepted": 2}
    assert suppression(aws)[["user_id", "channel"]].to_dict("records") == [{"user_id": "8", "channel": "sms"}]


@pytest.mark.parametrize(
    "case",
    [
        (b"x" * (256 * 1024 + 1), True, 400),
        (b"<html>not json</html>", True, 400),
        (vendor_body(vendor_report("r-1", "s1", "delivered", "2026-11-02T01:00:03Z")), False, 401),
    ],
    ids=["oversized", "non-json", "bad-signature"],
)
def test_bad_function_url_requests_store_nothing(
    aws: Any, handler: types.ModuleType, caplog: pytest.LogCaptureFixture, case: tuple[bytes, bool, int]
) -> None:
    body, signed, status = case
    secret = aws.secrets[aws.env["FEEDBACK_SECRET_PARAMETER"]].encode()
    signature = sign(body, secret if signed else b"guessed")
    response = handler.lambda_handler(url_event("POST", body, headers={"x-funnelcast-signature": signature}), CONTEXT)
    assert response["statusCode"] == status
    assert data(aws).list_keys("feedback/") == []
    assert data(aws).list_keys("suppression/") == []
    # And the log names the refusal but never carries the body
    (refusal,) = [r for r in caplog.records if "refused" in r.getMessage()]
    logged = str(vars(refusal))
    assert f"'status': {status}" in logged
    assert "r-1" not in logged
    assert "not json" not in logged


def test_one_click_unsubscribe_link_and_unknown_send_ids(aws: Any, handler: types.ModuleType) -> None:
    secret = aws.secrets[aws.env["FEEDBACK_SECRET_PARAMETER"]].encode()
    # Given an opened email whose send id no delivery knows (arrived before its delivery record)
    handler.lambda_handler(queue_event(aws, ses_record("Open", "ghost", "2026-11-02T01:30:00Z")), CONTEXT)
    # When user 7 clicks the one-click unsubscribe of m1 (RFC 8058 POST)
    response = handler.lambda_handler(
        url_event("POST", b"List-Unsubscribe=One-Click", query={"t": sign_send_id("m1", secret)}), CONTEXT
    )
    # Then it is applied at once (reading only that send's deliveries)
    assert response["statusCode"] == 200
    assert suppression(aws)["user_id"].tolist() == ["7"]
    # And the daily rebuild keeps the unknown open aside and counts it, not dropped
    _, unknown = rebuild_suppression(data(aws), Suppression(), now=datetime(2026, 11, 3, tzinfo=UTC))
    assert unknown == 1
    assert suppression(aws)["user_id"].tolist() == ["7"]
    aside = data(aws).get_bytes(UNKNOWN_KEY).decode().splitlines()
    assert [json.loads(line)["type"] for line in aside] == ["opened", "delivered"]
    assert "ghost" in aside[0]
