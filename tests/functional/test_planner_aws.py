"""The planner under moto with template.yaml's resources: request counts, the sender consuming its jobs,
waiting batches released by a one-time schedule, and the handler's event parsing."""

from __future__ import annotations

import importlib
import io
import json
import types
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from funnelcast.aws.clients import client
from funnelcast.jobs import SendJob
from funnelcast.local.aws_env import reset_caches
from funnelcast.planning.planner import PlannerDependencies, plan_campaign
from funnelcast.planning.wiring import release_due_batches
from funnelcast.rules.models import Campaign, Policy, RuleSet
from funnelcast.segments.snapshot import write_snapshot
from funnelcast.sending.fakes import FakeProvider
from funnelcast.storage import S3Store

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = types.SimpleNamespace(
    function_name="plan-campaign",
    memory_limit_in_mb=2048,
    invoked_function_arn="arn:aws:lambda:ap-northeast-2:123456789012:function:plan-campaign",
    aws_request_id="req-1",
)


def campaign(**changes: Any) -> Campaign:
    data: dict[str, Any] = {
        "kind": "campaign",
        "id": "shipping_notice",
        "name": "배송 안내",
        "funnel_stage": "retention",
        "audience": {"segment": "buyers"},
        "schedule": {"cron": "0 10 * * ? *", "timezone": "Asia/Seoul"},
        "purpose": "informational",
        "topic": "shipping",
        "channels": ["sms"],
        "variants": [{"id": "a", "weight": 1, "messages": {"sms": {"template": "{{ name }}님, 배송이 시작됐어요"}}}],
    }
    data.update(changes)
    return Campaign.model_validate(data)


def features(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": list(range(1, n + 1)),
            "timezone": ["Asia/Seoul"] * n,
            "phone": [f"+8210{i:08d}" for i in range(1, n + 1)],
            "consent_sms": [True] * n,
            "name": [f"고객{i}" for i in range(1, n + 1)],
        }
    )


def stage(aws: Any, ruleset: RuleSet, n: int, at: datetime) -> None:
    """Activate ``ruleset`` and write a snapshot where every campaign's audience is users 1..n."""
    rules, data = S3Store(aws.names["RulesBucket"]), S3Store(aws.names["DataBucket"])
    rules.put_bytes(f"rulesets/{ruleset.rules_hash}/bundle.json", ruleset.canonical_json())
    rules.put_bytes("active.json", json.dumps({"rules_hash": ruleset.rules_hash}).encode())
    ids = list(range(1, n + 1))
    segments = [f"@audience:{c.id}" for c in ruleset.campaigns]
    membership = pd.DataFrame({"user_id": ids * len(segments), "segment_id": [s for s in segments for _ in ids]})
    membership["segment_id"] = pd.Categorical(membership["segment_id"], categories=segments)
    write_snapshot(data, membership=membership, features=features(n), at=at, rules_hash=ruleset.rules_hash, manifest={})


class RequestCounter:
    """Counts AWS API calls per ``service.Operation`` through botocore's ``before-call`` event."""

    def __init__(self, services: list[str]) -> None:
        self.calls: Counter[str] = Counter()
        for service in services:
            client(service).meta.events.register("before-call.*.*", self._count)

    def _count(self, model: Any, **kwargs: Any) -> None:
        del kwargs
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def service(self, name: str) -> dict[str, int]:
        return {k: v for k, v in self.calls.items() if k.startswith(f"{name}.")}


@pytest.fixture
def planner_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(str(ROOT / "functions" / "plan_campaign"))
    module = importlib.import_module("plan_campaign")
    module._deps.clear()
    yield module
    module._deps.clear()


def drain(aws: Any, logical_id: str) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=aws.names[logical_id], MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
        for message in batch:
            sqs.delete_message(QueueUrl=aws.names[logical_id], ReceiptHandle=message["ReceiptHandle"])


def test_1000_recipients_cost_few_sqs_requests_and_no_per_user_reads(aws: Any, planner_module: Any) -> None:
    # Given 1,000 buyers and an informational SMS campaign (no window: sendable now), a cap of 1 a day
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ruleset = RuleSet(
        campaigns=[campaign()],
        policy=Policy(kind="policy", caps=[{"max": 1, "per": "day"}]),  # type: ignore[list-item]
    )
    stage(aws, ruleset, 1000, now)
    counter = RequestCounter(["sqs", "dynamodb", "s3", "scheduler"])
    # When the campaign's schedule invokes the planner Lambda
    result = planner_module.lambda_handler(
        {"campaign_id": "shipping_notice", "scheduled_time": now.isoformat()}, CONTEXT
    )
    # Then all 1,000 are queued with at most 20 SQS requests and no per-user DynamoDB reads
    assert result["status"] == "done"
    assert result["outcomes"] == {"queued": 1000}
    sqs_calls = counter.service("sqs")
    assert set(sqs_calls) == {"sqs.SendMessageBatch"}
    assert sum(sqs_calls.values()) <= 20
    dynamodb = counter.service("dynamodb")
    assert set(dynamodb) <= {"dynamodb.BatchGetItem", "dynamodb.PutItem", "dynamodb.UpdateItem"}
    # the cap table read in batches of 100 user-weeks (this week, and last week when today is Monday)
    assert dynamodb.get("dynamodb.BatchGetItem", 0) <= 20
    assert sum(dynamodb.values()) <= 30
    # And a second firing of the same minute is a no-op
    again = planner_module.lambda_handler(
        {"campaign_id": "shipping_notice", "scheduled_time": now.isoformat()}, CONTEXT
    )
    assert again["status"] == "noop"
    assert sum(len(SendJob.model_validate_json(m["Body"]).recipients) for m in drain(aws, "SmsQueue")) == 1000


def test_the_sms_sender_lambda_sends_exactly_the_jobs_the_planner_enqueued(
    aws: Any, planner_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a planned run of 3 recipients (sendable now) in the SMS queue
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ruleset = RuleSet(campaigns=[campaign()], policy=Policy(kind="policy", caps=[{"max": 1, "per": "day"}]))  # type: ignore[list-item]
    stage(aws, ruleset, 3, now)
    planned = planner_module.lambda_handler(
        {"campaign_id": "shipping_notice", "scheduled_time": now.isoformat()}, CONTEXT
    )
    assert planned["outcomes"] == {"queued": 3}
    messages = drain(aws, "SmsQueue")
    # When the SMS sender Lambda (fake provider, real cap store and state table) receives them from SQS
    provider = FakeProvider("sms")
    monkeypatch.setattr("funnelcast.sending.wiring.build_provider", lambda channel, settings: provider)
    for name, value in aws.function_env("SendSmsFunction").items():
        monkeypatch.setenv(name, value)
    reset_caches()
    monkeypatch.syspath_prepend(str(ROOT / "functions" / "send_message"))
    send_message = importlib.import_module("send_message")
    send_message._runtime.clear()
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
    response = send_message.lambda_handler({"Records": records}, CONTEXT)
    send_message._runtime.clear()
    # Then every planned send id went out once, rendered from the job's variables
    assert response == {"batchItemFailures": []}
    decisions = S3Store(aws.names["DataBucket"]).get_bytes(f"runs/shipping_notice@{now:%Y%m%dT%H%MZ}/decisions.parquet")
    planned_ids = set(pd.read_parquet(io.BytesIO(decisions))["send_id"])
    assert sorted(provider.send_ids()) == sorted(planned_ids)
    assert sorted(entry.body for entry in provider.outbox) == [f"고객{i}님, 배송이 시작됐어요" for i in (1, 2, 3)]


def test_waiting_users_are_stored_scheduled_and_released_by_the_handler(aws: Any, planner_module: Any) -> None:
    # Given an advertising campaign at 22:00 Seoul time: the night ban holds everyone until 08:00
    at_night = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    ad = campaign(id="night_promo", purpose="advertising", topic="promo")
    ruleset = RuleSet(campaigns=[ad], policy=Policy(kind="policy"))
    stage(aws, ruleset, 25, at_night)
    deps = PlannerDependencies.from_settings(aws.settings)
    deps.clock = lambda: at_night
    # When the planner runs
    summary = plan_campaign("night_promo", at_night, deps)
    # Then nobody is sent early: all wait for 08:00 local (23:00 UTC) in one stored batch
    assert summary.outcomes == {"waiting": 25}
    key = "waiting/night_promo@20261201T1300Z/20261201T2300Z.json"
    assert summary.waiting_batches == [key]
    assert drain(aws, "SmsQueue") == []
    # And a one-time schedule at 23:00 UTC targets the planner with the release action
    scheduler = aws.client("scheduler")
    schedules = scheduler.list_schedules(GroupName=aws.names["ScheduleGroup"])["Schedules"]
    waiting = [s for s in schedules if s["Name"].startswith("waiting-")]
    assert len(waiting) == 1
    detail = scheduler.get_schedule(Name=waiting[0]["Name"], GroupName=aws.names["ScheduleGroup"])
    assert detail["ScheduleExpression"] == "at(2026-12-01T23:00:00)"
    assert json.loads(detail["Target"]["Input"]) == {"action": "release_waiting", "key": key}
    assert detail["Target"]["Arn"] == aws.settings.planner_function_arn
    # When the schedule fires the planner Lambda with that input (twice)
    first = planner_module.lambda_handler(json.loads(detail["Target"]["Input"]), CONTEXT)
    second = planner_module.lambda_handler(json.loads(detail["Target"]["Input"]), CONTEXT)
    # Then the 25 recipients are enqueued once, still carrying their not_before
    assert (first["status"], first["recipients"], second["status"]) == ("released", 25, "noop")
    jobs = [SendJob.model_validate_json(m["Body"]) for m in drain(aws, "SmsQueue")]
    assert sum(len(job.recipients) for job in jobs) == 25
    assert {r.not_before for job in jobs for r in job.recipients} == {datetime(2026, 12, 1, 23, 0, tzinfo=UTC)}


@pytest.mark.parametrize(
    "event",
    [
        {"campaign_id": "Bad Id!", "scheduled_time": "2026-12-01T01:00:00Z"},
        {"campaign_id": "ok"},
        {"action": "release_waiting", "key": "../../etc/passwd"},
        {"action": "explode"},
    ],
)
def test_the_handler_rejects_malformed_events_naming_the_field(event: dict[str, Any], planner_module: Any) -> None:
    with pytest.raises(ValidationError):
        planner_module.lambda_handler(event, CONTEXT)


def test_a_missing_snapshot_marks_the_run_failed_in_the_state_table(aws: Any, planner_module: Any) -> None:
    # Given active rules and no snapshot
    ruleset = RuleSet(campaigns=[campaign()], policy=Policy(kind="policy"))
    rules = S3Store(aws.names["RulesBucket"])
    rules.put_bytes(f"rulesets/{ruleset.rules_hash}/bundle.json", ruleset.canonical_json())
    rules.put_bytes("active.json", json.dumps({"rules_hash": ruleset.rules_hash}).encode())
    # When the schedule fires
    at = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    result = planner_module.lambda_handler(
        {"campaign_id": "shipping_notice", "scheduled_time": at.isoformat()}, CONTEXT
    )
    # Then the run record says failed, with the reason
    assert result["status"] == "failed"
    item = aws.client("dynamodb").get_item(
        TableName=aws.names["StateTable"], Key={"pk": {"S": "run#shipping_notice@20261201T0100Z"}, "sk": {"S": "run"}}
    )["Item"]
    assert item["status"]["S"] == "failed"
    assert "no segment snapshot yet" in item["error"]["S"]


def test_the_demo_clock_fires_waiting_schedules_only_when_due(aws: Any) -> None:
    # Given night-banned users waiting for 23:00 UTC (08:00 Seoul)
    at_night = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    ruleset = RuleSet(campaigns=[campaign(id="night_promo", purpose="advertising")], policy=Policy(kind="policy"))
    stage(aws, ruleset, 5, at_night)
    deps = PlannerDependencies.from_settings(aws.settings)
    deps.clock = lambda: at_night
    plan_campaign("night_promo", at_night, deps)
    scheduler, group = aws.client("scheduler"), aws.names["ScheduleGroup"]
    # When the simulated clock reaches 22:59, then 23:00
    early = release_due_batches(deps, scheduler, group, datetime(2026, 12, 1, 22, 59, tzinfo=UTC))
    assert early == []
    assert drain(aws, "SmsQueue") == []
    due = release_due_batches(deps, scheduler, group, datetime(2026, 12, 1, 23, 0, tzinfo=UTC))
    # Then the batch goes out exactly then, and its schedule is gone (as ActionAfterCompletion DELETE does)
    assert [(s.status, s.recipients) for s in due] == [("released", 5)]
    assert sum(len(SendJob.model_validate_json(m["Body"]).recipients) for m in drain(aws, "SmsQueue")) == 5
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]
    assert not [n for n in names if n.startswith("waiting-")]
