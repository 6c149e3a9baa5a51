"""The send_message Lambda under moto: S3 rule set, DynamoDB states, SQS fallback, SNS push, JSONL deliveries."""

from __future__ import annotations

import importlib
import json
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from funnelcast.aws.clients import client
from funnelcast.errors import ConfigurationError
from funnelcast.jobs import SendJob
from funnelcast.rules.models import RuleSet
from funnelcast.sending.batch import handle_batch
from funnelcast.sending.state import DynamoSendStates
from funnelcast.sending.wiring import SqsJobQueues, StoredRuleSets, build_provider
from funnelcast.sending.worker import SenderDependencies
from funnelcast.settings import Settings, get_settings
from funnelcast.storage import S3Store

REGION = "ap-northeast-2"
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
RULESET = RuleSet.model_validate(
    {
        "policy": {"kind": "policy", "caps": [{"max": 2, "per": "day"}]},
        "campaigns": [
            {
                "kind": "campaign",
                "id": "shipping",
                "name": "Shipping notice",
                "funnel_stage": "retention",
                "audience": {"attribute": "x", "op": "exists"},
                "schedule": {"rate": "1 hour"},
                "purpose": "informational",
                "channels": ["push", "sms"],
                "variants": [
                    {
                        "id": "a",
                        "weight": 1,
                        "messages": {
                            "push": {"template": "{{ name }}님, 배송이 시작됐어요", "title": "배송"},
                            "sms": {"template": "{{ name }}님, 배송이 시작됐어요"},
                        },
                    }
                ],
            }
        ],
    }
)


def _table(ddb: Any, name: str) -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Buckets, tables, queues and two SNS endpoints (one disabled) in moto; env vars of the push sender."""
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client.cache_clear()
        get_settings.cache_clear()
        s3: Any = boto3.client("s3", region_name=REGION)
        ddb: Any = boto3.client("dynamodb", region_name=REGION)
        sqs: Any = boto3.client("sqs", region_name=REGION)
        sns: Any = boto3.client("sns", region_name=REGION)
        for bucket in ("rules", "data"):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket="rules", Key=f"rulesets/{RULESET.rules_hash}/bundle.json", Body=RULESET.canonical_json())
        s3.put_object(Bucket="rules", Key="active.json", Body=json.dumps({"rules_hash": RULESET.rules_hash}))
        _table(ddb, "caps")
        _table(ddb, "state")
        urls = {ch: sqs.create_queue(QueueName=f"{ch}-q")["QueueUrl"] for ch in ("push", "sms")}
        app = sns.create_platform_application(Name="a", Platform="GCM", Attributes={"PlatformCredential": "k"})
        good = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"], Token="t1")
        gone = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"], Token="t2")
        sns.set_endpoint_attributes(EndpointArn=gone["EndpointArn"], Attributes={"Enabled": "false"})
        env = {
            "CHANNEL": "push",
            "RULES_BUCKET": "rules",
            "DATA_BUCKET": "data",
            "CAP_TABLE": "caps",
            "STATE_TABLE": "state",
            "QUEUE_URL_PUSH": urls["push"],
            "QUEUE_URL_SMS": urls["sms"],
            "POWERTOOLS_METRICS_NAMESPACE": "funnelcast",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield {**env, "good": good["EndpointArn"], "gone": gone["EndpointArn"]}
        client.cache_clear()
        get_settings.cache_clear()


def push_job(cloud: dict[str, str]) -> str:
    def person(user: int, endpoint: str) -> dict[str, Any]:
        return {
            "send_id": f"s{user}",
            "user_id": user,
            "variant_id": "a",
            "waterfall": ["push", "sms"],
            "timezone": "Asia/Seoul",
            "contact": {"push_endpoint": endpoint, "phone": f"+82105550000{user}"},
            "variables": {"name": f"고객{user}"},
        }

    return SendJob.model_validate(
        {
            "job_id": "j1",
            "run_id": "shipping@20261201T0300Z",
            "campaign_id": "shipping",
            "rules_hash": RULESET.rules_hash,
            "channel": "push",
            "purpose": "informational",
            "scheduled_at": NOW,
            "recipients": [person(1, cloud["good"]), person(2, cloud["gone"])],
        }
    ).model_dump_json()


def event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m{i}", "receiptHandle": "r", "body": b, "attributes": {}, "eventSource": "aws:sqs"}
            for i, b in enumerate(bodies)
        ]
    }


def assert_push_then_sms_fallback(cloud: dict[str, str], response: dict[str, Any]) -> None:
    # Then the poison record alone fails, user 1 got push, user 2 moved to the SMS queue
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    s3 = boto3.client("s3", region_name=REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="data", Prefix="deliveries/")["Contents"]]
    assert len(keys) == 1
    rows = [json.loads(line) for line in s3.get_object(Bucket="data", Key=keys[0])["Body"].read().splitlines()]
    assert [(r["user_id"], r["channel"], r["status"]) for r in rows] == [(1, "push", "sent")]
    sqs = boto3.client("sqs", region_name=REGION)
    messages = sqs.receive_message(QueueUrl=cloud["QUEUE_URL_SMS"], MaxNumberOfMessages=10)["Messages"]
    follow = SendJob.model_validate_json(messages[0]["Body"])
    assert (follow.channel, follow.fallback_from, [r.user_id for r in follow.recipients]) == ("sms", "push", [2])
    ddb = boto3.client("dynamodb", region_name=REGION)
    state = ddb.get_item(TableName="state", Key={"pk": {"S": "send#s2"}, "sk": {"S": "state"}})["Item"]
    assert (state["state"]["S"], state["channel"]["S"]) == ("handed_off", "sms")


class FakeCaps:
    def reserve(self, reservation: Any, *, policy: Any = None) -> Any:
        return type("Result", (), {"status": "reserved", "cap": None})()

    def release(self, reservation: Any) -> None:
        del reservation


def test_batch_with_aws_adapters_sends_falls_back_and_records(cloud: dict[str, str]) -> None:
    # Given the real S3 / DynamoDB / SQS / SNS adapters (caps faked: H5's store is tested on its own)
    settings = Settings.from_env()
    deps = SenderDependencies(
        rulesets=StoredRuleSets(S3Store("rules")),
        caps=FakeCaps(),
        states=DynamoSendStates("state"),
        queues=SqsJobQueues(settings),
        deliveries=S3Store("data"),
        providers={"push": build_provider("push", settings)},
        clock=lambda: NOW,
    )
    # When a batch with one good job and one poison body arrives
    response = handle_batch(event(push_job(cloud), "{oops"), None, deps, "push")
    assert_push_then_sms_fallback(cloud, response)


def test_lambda_handler_end_to_end(cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the deployed handler module; H5's real cap store when it has landed, else a stand-in module
    try:
        importlib.import_module("funnelcast.caps.store")
    except ImportError:
        stand_in = types.ModuleType("funnelcast.caps.store")
        stand_in.CapStore = lambda table, policy: FakeCaps()  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "funnelcast.caps.store", stand_in)
    context = types.SimpleNamespace(
        function_name="send_push",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:ap-northeast-2:123456789012:function:send_push",
        aws_request_id="req-1",
    )
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "functions" / "send_message"))
    send_message = importlib.import_module("send_message")
    send_message._runtime.clear()
    # When SQS invokes it with a good job and a poison body
    response = send_message.lambda_handler(event(push_job(cloud), "{oops"), context)
    assert_push_then_sms_fallback(cloud, response)


def test_kakao_api_key_comes_from_ssm_via_powertools_parameters(cloud: dict[str, str]) -> None:
    # Given the vendor API key as a SecureString in SSM
    boto3.client("ssm", region_name=REGION).put_parameter(Name="/fc/kakao", Value="k-123", Type="SecureString")
    settings = Settings.from_env(
        {"KAKAO_BASE_URL": "https://vendor.example", "KAKAO_SENDER_KEY": "S", "KAKAO_API_KEY_PARAMETER": "/fc/kakao"}
    )
    provider = build_provider("kakao_alimtalk", settings)
    # Then the provider reads it on demand (not at construction)
    assert provider._api_key() == "k-123"  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="KAKAO_BASE_URL"):
        build_provider("kakao_brand", Settings.from_env({}))
