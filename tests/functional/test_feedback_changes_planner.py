"""Reactions change who the planner sends to (issue #6 "done when"), end to end under moto:
planner run 1 -> SMS sender (fake provider, real cap store, state table, deliveries) -> the vendor
reports an 080 opt-out to ingest_feedback's Function URL -> planner run 2 reads suppression/latest.parquet."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import io
import json
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from funnelcast.jobs import SendJob
from funnelcast.local.aws_env import reset_caches
from funnelcast.planning.planner import PlannerDependencies, plan_campaign
from funnelcast.rules.models import Campaign, Policy, RuleSet
from funnelcast.segments.snapshot import write_snapshot
from funnelcast.sending.batch import handle_batch
from funnelcast.sending.fakes import FakeProvider
from funnelcast.settings import Settings
from funnelcast.storage import S3Store

ROOT = Path(__file__).resolve().parents[2]
RUN_1 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 11:00 in Seoul: advertising allowed
RUN_2 = RUN_1 + timedelta(days=1)
USERS = [1, 2, 3]
CONTEXT = types.SimpleNamespace(
    function_name="f",
    memory_limit_in_mb=512,
    aws_request_id="req-1",
    invoked_function_arn="arn:aws:lambda:ap-northeast-2:123456789012:function:f",
)


def promo() -> Campaign:
    return Campaign.model_validate(
        {
            "kind": "campaign",
            "id": "promo_blast",
            "name": "주말 특가",
            "funnel_stage": "revenue",
            "audience": {"segment": "buyers"},
            "schedule": {"cron": "0 11 * * ? *", "timezone": "Asia/Seoul"},
            "purpose": "advertising",
            "topic": "promo",
            "channels": ["sms", "email"],
            "variants": [
                {
                    "id": "a",
                    "weight": 1,
                    "messages": {
                        "sms": {"template": "{{ name }}님, 주말 특가!"},
                        "email": {"template": "{{ name }}님, 주말 특가!", "subject": "주말 특가"},
                    },
                }
            ],
        }
    )


def stage(aws: Any, unsubscribe: str) -> RuleSet:
    """Given an active advertising campaign (SMS first, then email) whose audience is users 1-3, all
    reachable and consenting on both channels."""
    policy = Policy.model_validate(
        {
            "kind": "policy",
            "suppression": {"unsubscribe": unsubscribe},
            "compliance": {"opt_out_text": "무료수신거부 080-000-0000"},
        }
    )
    ruleset = RuleSet(campaigns=[promo()], policy=policy)
    rules, data = S3Store(aws.names["RulesBucket"]), S3Store(aws.names["DataBucket"])
    rules.put_bytes(f"rulesets/{ruleset.rules_hash}/bundle.json", ruleset.canonical_json())
    rules.put_bytes("active.json", json.dumps({"rules_hash": ruleset.rules_hash}).encode())
    features = pd.DataFrame(
        {
            "user_id": USERS,
            "timezone": ["Asia/Seoul"] * 3,
            "phone": [f"+8210000000{u}" for u in USERS],
            "email": [f"user{u}@example.com" for u in USERS],
            "consent_sms": [True] * 3,
            "consent_email": [True] * 3,
            "name": [f"고객{u}" for u in USERS],
        }
    )
    membership = pd.DataFrame({"user_id": USERS, "segment_id": pd.Categorical(["@audience:promo_blast"] * 3)})
    for at in (RUN_1, RUN_2):
        write_snapshot(
            data,
            membership=membership,
            features=features,
            at=at - timedelta(minutes=5),
            rules_hash=ruleset.rules_hash,
            manifest={},
        )
    return ruleset


def drain(aws: Any, logical_id: str) -> list[dict[str, Any]]:
    sqs, messages = aws.client("sqs"), []
    while batch := sqs.receive_message(QueueUrl=aws.names[logical_id], MaxNumberOfMessages=10).get("Messages", []):
        messages.extend(batch)
        for message in batch:
            sqs.delete_message(QueueUrl=aws.names[logical_id], ReceiptHandle=message["ReceiptHandle"])
    return messages


def recipients(messages: list[dict[str, Any]]) -> dict[str, str]:
    """user id -> send id of every recipient in these SendJob messages."""
    jobs = [SendJob.model_validate_json(m["Body"]) for m in messages]
    return {str(r.user_id): r.send_id for job in jobs for r in job.recipients}


def plan(aws: Any, at: datetime) -> pd.DataFrame:
    deps = PlannerDependencies.from_settings(aws.settings)
    deps.clock = lambda: at
    summary = plan_campaign("promo_blast", at, deps)
    assert summary.status == "done", summary
    key = f"runs/promo_blast@{at:%Y%m%dT%H%MZ}/decisions.parquet"
    return pd.read_parquet(io.BytesIO(S3Store(aws.names["DataBucket"]).get_bytes(key)))


def send_sms(aws: Any, messages: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    """The SMS sender worker (fake provider; real cap store, state table and deliveries object)."""
    from funnelcast.sending.wiring import dependencies_from_settings

    monkeypatch.setattr("funnelcast.sending.wiring.build_provider", lambda channel, settings: FakeProvider("sms"))
    deps = dependencies_from_settings(Settings.from_env(aws.function_env("SendSmsFunction")))
    deps.clock = lambda: at
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": "r",
            "body": m["Body"],
            "attributes": {},
            "eventSource": "aws:sqs",
        }
        for m in messages
    ]
    assert handle_batch({"Records": records}, None, deps, "sms") == {"batchItemFailures": []}


@pytest.fixture
def ingest(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    for name, value in aws.function_env("IngestFeedbackFunction").items():
        monkeypatch.setenv(name, value)
    reset_caches()
    monkeypatch.syspath_prepend(str(ROOT / "functions" / "ingest_feedback"))
    module = importlib.import_module("ingest_feedback")
    module._deps.clear()
    yield module
    module._deps.clear()


def vendor_opt_out(aws: Any, ingest: types.ModuleType, send_id: str, at: datetime) -> dict[str, Any]:
    """The SMS vendor posts a signed report: the user replied to the 080 number (수신거부)."""
    secret = aws.secrets[aws.env["FEEDBACK_SECRET_PARAMETER"]].encode()
    body = json.dumps(
        {
            "reports": [
                {"id": "080-1", "send_id": send_id, "status": "unsubscribed", "ts": at.isoformat(), "channel": "sms"}
            ]
        }
    ).encode()
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    event = {
        "version": "2.0",
        "headers": {"x-funnelcast-signature": signature},
        "isBase64Encoded": True,
        "requestContext": {"http": {"method": "POST", "sourceIp": "203.0.113.7"}},
        "body": base64.b64encode(body).decode(),
    }
    response: dict[str, Any] = ingest.lambda_handler(event, CONTEXT)
    return response


@pytest.mark.parametrize(("unsubscribe", "user_2_after"), [("channel", "email"), ("all", "suppressed")])
def test_an_sms_opt_out_changes_the_next_run(
    aws: Any, ingest: types.ModuleType, monkeypatch: pytest.MonkeyPatch, unsubscribe: str, user_2_after: str
) -> None:
    stage(aws, unsubscribe)
    # When run 1 plans, the SMS sender sends, and user 2 opts out of SMS through the vendor
    first = plan(aws, RUN_1)
    assert set(first["outcome"]) == {"queued"}
    jobs = drain(aws, "SmsQueue")
    assert sorted(recipients(jobs)) == ["1", "2", "3"]
    send_sms(aws, jobs, monkeypatch, RUN_1 + timedelta(minutes=1))
    response = vendor_opt_out(aws, ingest, recipients(jobs)["2"], RUN_1 + timedelta(hours=2))
    assert response["statusCode"] == 200
    # And run 2 plans the next day
    second = plan(aws, RUN_2).set_index("user_id")
    sms_next = recipients(drain(aws, "SmsQueue"))
    email_next = recipients(drain(aws, "EmailQueue"))
    # Then user 2 gets no advertising SMS; users 1 and 3 do, as before
    assert sorted(sms_next) == ["1", "3"]
    if user_2_after == "email":
        # unsubscribe: channel -> only SMS consent is off; the waterfall moves user 2 to email
        assert sorted(email_next) == ["2"]
        assert second.loc[2, "channel"] == "email"
    else:
        # unsubscribe: all -> every channel is off for user 2
        assert email_next == {}
        assert second.loc[2, "outcome"] == "suppressed"
        assert second.loc[2, "reason"] == "suppressed:all_channels"
