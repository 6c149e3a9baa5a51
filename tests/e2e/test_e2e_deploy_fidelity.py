"""Deploy fidelity (issue #7): template.yaml as CloudFormation resolves it, then the pipeline against it.

The template is packaged to moto S3, transformed offline by aws-sam-translator and created as a
stack in moto CloudFormation. Each function's environment is then read back from moto Lambda (what
CloudFormation resolved, not our own resolver) and must name resources that exist; the activation
handler then runs against exactly those names. moto's CloudFormation implements neither the
scheduler nor TTL nor layer attachment: those are asserted on the translated template, and the
schedule group is created under the name the functions were given.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from funnelcast.local.aws_env import DEFAULT_REGION, FAKE_CREDENTIALS, boto_client, reset_caches
from funnelcast.local.stack import Stack, deploy_to_moto

ROOT = Path(__file__).resolve().parents[2]
STACK_NAME = "fidelity"
CHANNEL_QUEUE_VARS = {
    "email": "QUEUE_URL_EMAIL",
    "sms": "QUEUE_URL_SMS",
    "push": "QUEUE_URL_PUSH",
    "kakao_alimtalk": "QUEUE_URL_KAKAO_ALIMTALK",
    "kakao_brand": "QUEUE_URL_KAKAO_BRAND",
    "webhook": "QUEUE_URL_WEBHOOK",
}


@dataclass
class Deployed:
    stack: Stack
    environments: dict[str, dict[str, str]]
    """function logical id -> environment variables as moto Lambda holds them."""

    def client(self, service: str) -> Any:
        return boto_client(service, DEFAULT_REGION)


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    """The stack in moto, once for the module (packaging and creating it takes a few seconds)."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": DEFAULT_REGION}.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            stack = deploy_to_moto(ROOT / "template.yaml", stack_name=STACK_NAME, region=DEFAULT_REGION)
            result = Deployed(stack=stack, environments={})
            lambda_client = result.client("lambda")
            for logical_id, definition in stack.translated["Resources"].items():
                if definition["Type"] == "AWS::Lambda::Function":
                    configuration = lambda_client.get_function_configuration(
                        FunctionName=stack.physical_ids[logical_id]
                    )
                    result.environments[logical_id] = configuration["Environment"]["Variables"]
            yield result
    reset_caches()


def _queue_exists(deployed: Deployed, url: str) -> bool:
    attributes = deployed.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return bool(attributes["Attributes"]["QueueArn"])


def test_every_function_environment_names_existing_resources(deployed: Deployed) -> None:
    # Given every function as CloudFormation created it
    s3, ddb, iam, lam = (deployed.client(s) for s in ("s3", "dynamodb", "iam", "lambda"))
    assert len(deployed.environments) == 11
    for logical_id, env in deployed.environments.items():
        # Then each bucket, table, queue, role and function it names exists
        for variable in ("RULES_BUCKET", "DATA_BUCKET"):
            s3.head_bucket(Bucket=env[variable])
        for variable in ("CAP_TABLE", "STATE_TABLE", "IDEMPOTENCY_TABLE"):
            assert ddb.describe_table(TableName=env[variable])["Table"]["TableStatus"] == "ACTIVE"
        for variable in (*CHANNEL_QUEUE_VARS.values(), "FEEDBACK_QUEUE_URL"):
            assert _queue_exists(deployed, env[variable]), (logical_id, variable)
        role_name = env["SCHEDULER_ROLE_ARN"].rsplit("/", 1)[-1]
        assert iam.get_role(RoleName=role_name)["Role"]["Arn"] == env["SCHEDULER_ROLE_ARN"]
        # The planner ARN is constructed in the template (to avoid a cycle): it must be the real one
        planner = lam.get_function(FunctionName=deployed.stack.physical_ids["PlanCampaignFunction"])
        assert env["PLANNER_FUNCTION_ARN"] == planner["Configuration"]["FunctionArn"]
        # And the scheduler group name is the one the template gives the (moto-less) ScheduleGroup
        assert env["SCHEDULE_GROUP"] == STACK_NAME
        assert env["DATA_PREFIX"] == "input/"


def test_outputs_agree_with_what_functions_were_given(deployed: Deployed) -> None:
    # Given the stack outputs an operator reads, then they are the names the functions use
    outputs = deployed.stack.outputs
    env = deployed.environments["PlanCampaignFunction"]
    assert outputs["RulesBucketName"] == env["RULES_BUCKET"]
    assert outputs["DataBucketName"] == env["DATA_BUCKET"]
    assert outputs["CapTableName"] == env["CAP_TABLE"]
    assert outputs["StateTableName"] == env["STATE_TABLE"]
    assert outputs["FeedbackQueueUrl"] == env["FEEDBACK_QUEUE_URL"]
    assert outputs["EmailQueueUrl"] == env["QUEUE_URL_EMAIL"]
    assert outputs["SchedulerRoleArn"] == env["SCHEDULER_ROLE_ARN"]


def test_each_sender_polls_the_queue_of_its_channel(deployed: Deployed) -> None:
    # Given the translated event source mappings (moto does not run them)
    resources = deployed.stack.translated["Resources"]
    polled: dict[str, str] = {}
    for definition in resources.values():
        if definition["Type"] == "AWS::Lambda::EventSourceMapping":
            properties = definition["Properties"]
            polled[properties["FunctionName"]["Ref"]] = properties["EventSourceArn"]["Fn::GetAtt"][0]
    # Then the queue a sender polls is the one its CHANNEL's QUEUE_URL_* names, so a fallback
    # re-enqueued to another channel lands in that channel's sender
    for logical_id, env in deployed.environments.items():
        channel = env.get("CHANNEL")
        if not channel:
            continue
        queue_url = deployed.stack.physical_ids[polled[logical_id]]
        assert env[CHANNEL_QUEUE_VARS[channel]] == queue_url, logical_id
    assert (
        deployed.stack.physical_ids[polled["IngestFeedbackFunction"]]
        == (deployed.environments["IngestFeedbackFunction"]["FEEDBACK_QUEUE_URL"])
    )


def test_what_moto_cloudformation_ignores_is_in_the_translated_template(deployed: Deployed) -> None:
    resources = deployed.stack.translated["Resources"]
    # TTL attributes are the ones the cap store, send states and Powertools idempotency write
    ttl = {
        logical_id: d["Properties"]["TimeToLiveSpecification"]["AttributeName"]
        for logical_id, d in resources.items()
        if d["Type"] == "AWS::DynamoDB::Table"
    }
    assert ttl == {"CapTable": "expires_at", "StateTable": "expires_at", "IdempotencyTable": "expiration"}
    # Scheduler resources were skipped by moto but are in the template, in the functions' group
    skipped = deployed.stack.skipped
    assert skipped["ScheduleGroup"] == "AWS::Scheduler::ScheduleGroup"
    assert {"RecomputeSchedule", "ReportSchedule"} <= set(skipped)
    # Every function has the core layer; only the pandas functions have the data layer
    for logical_id, definition in resources.items():
        if definition["Type"] == "AWS::Lambda::Function":
            layers = sorted(layer["Ref"][:4] for layer in definition["Properties"]["Layers"])
            expected = (
                ["Core", "Data"]
                if logical_id
                in {
                    "RecomputeSegmentsFunction",
                    "PlanCampaignFunction",
                    "BuildReportFunction",
                    "IngestFeedbackFunction",
                }
                else ["Core"]
            )
            assert layers == expected, logical_id


def _context(name: str) -> Any:
    class Context:
        function_name = name
        memory_limit_in_mb = 512
        invoked_function_arn = f"arn:aws:lambda:{DEFAULT_REGION}:123456789012:function:{name}"
        aws_request_id = "fidelity-1"

    return Context()


def _import_handler(name: str) -> Any:
    sys.path.insert(0, str(ROOT / "functions" / name))
    try:
        module = __import__(name)
    finally:
        sys.path.pop(0)
    return module


def _invoke(function: str, env: dict[str, str], event: dict[str, Any], context_name: str) -> Any:
    """Call ``functions/<function>``'s handler with ``env`` set exactly as CloudFormation resolved it.

    The handler's cached cold-start state (``_deps`` / ``_runtime``) and the package's client and
    settings caches are cleared before and after, so each call sees only this stack's names.
    """
    handler = _import_handler(function)
    cached = handler._deps if hasattr(handler, "_deps") else getattr(handler, "_runtime", None)
    if cached is not None:
        cached.clear()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        reset_caches()
        try:
            return handler.lambda_handler(event, _context(context_name))
        finally:
            if cached is not None:
                cached.clear()
            reset_caches()


def _sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event the Lambda event source mapping would deliver for ``messages`` of ``queue_arn``."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": DEFAULT_REGION,
            }
            for message in messages
        ]
    }


def test_activation_runs_against_the_stack_resources(deployed: Deployed, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given ActivateRulesFunction's environment exactly as CloudFormation resolved it
    env = deployed.environments["ActivateRulesFunction"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    # and the schedule group moto's CloudFormation cannot create, under the name the function got
    scheduler = deployed.client("scheduler")
    existing = {g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]}
    if env["SCHEDULE_GROUP"] not in existing:
        scheduler.create_schedule_group(Name=env["SCHEDULE_GROUP"])
    # and the example rule set uploaded where a marketer uploads it
    s3 = deployed.client("s3")
    examples = ROOT / "segment_rules"
    keys = []
    for path in sorted(examples.rglob("*.yaml")):
        key = f"incoming/{path.relative_to(examples)}"
        s3.put_object(Bucket=env["RULES_BUCKET"], Key=key, Body=path.read_bytes())
        keys.append(key)
    event = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": DEFAULT_REGION,
                "eventTime": "2026-12-01T01:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": env["RULES_BUCKET"], "arn": f"arn:aws:s3:::{env['RULES_BUCKET']}"},
                    "object": {"key": keys[-1], "size": 1},
                },
            }
        ]
    }
    # When the handler runs as S3 would invoke it
    handler = _import_handler("activate_rules")
    try:
        result = handler.lambda_handler(event, _context(deployed.stack.physical_ids["ActivateRulesFunction"]))
    finally:
        reset_caches()
    # Then the rule set is active in the stack's rules bucket
    (outcome,) = result["results"]
    assert outcome["activated"] is True, outcome
    pointer = json.loads(s3.get_object(Bucket=env["RULES_BUCKET"], Key="active.json")["Body"].read())
    assert pointer["rules_hash"] == outcome["rules_hash"]
    # And each campaign got a schedule in the group, targeting the real planner with the real role
    schedules = scheduler.list_schedules(GroupName=env["SCHEDULE_GROUP"])["Schedules"]
    assert schedules, "activation created no campaign schedule"
    for summary in schedules:
        detail = scheduler.get_schedule(Name=summary["Name"], GroupName=env["SCHEDULE_GROUP"])
        assert detail["Target"]["Arn"] == env["PLANNER_FUNCTION_ARN"]
        assert detail["Target"]["RoleArn"] == env["SCHEDULER_ROLE_ARN"]


FIDELITY_CAMPAIGN = """\
kind: campaign
id: fidelity_notice
name: 배송 안내
description: An informational email, sendable at any hour, to prove the deployed wiring end to end.
funnel_stage: retention
audience: {segment: new_signups}
schedule: {rate: 1 hour}
purpose: informational
topic: shipping
channels: [email]
variants:
  - id: a
    weight: 1
    messages:
      email: {subject: "배송 안내", template: "{{ name }}님, 주문하신 상품의 배송이 시작됐어요."}
"""


def _run_activation(deployed: Deployed, env: dict[str, str], files: dict[str, bytes]) -> dict[str, Any]:
    """Replace incoming/ with ``files`` and invoke the activation handler as S3 would."""
    s3 = deployed.client("s3")
    listed = s3.list_objects_v2(Bucket=env["RULES_BUCKET"], Prefix="incoming/").get("Contents", [])
    for item in listed:
        s3.delete_object(Bucket=env["RULES_BUCKET"], Key=item["Key"])
    for key, body in files.items():
        s3.put_object(Bucket=env["RULES_BUCKET"], Key=key, Body=body)
    scheduler = deployed.client("scheduler")
    if env["SCHEDULE_GROUP"] not in {g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]}:
        scheduler.create_schedule_group(Name=env["SCHEDULE_GROUP"])
    result: dict[str, Any] = _invoke(
        "activate_rules", env, _s3_event(env["RULES_BUCKET"], sorted(files)[-1]), "activate"
    )
    return result


def _s3_event(bucket: str, key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": DEFAULT_REGION,
                "eventTime": "2026-12-01T01:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": key, "size": 1},
                },
            }
        ]
    }


def test_one_campaign_flows_from_upload_to_delivery_through_the_stack(deployed: Deployed) -> None:
    """Upload -> activation -> recompute -> planner -> email queue -> email sender, each with its own env."""
    envs = deployed.environments
    # Given a rule set with one informational email campaign, activated through the stack
    examples = ROOT / "segment_rules"
    files = {
        "incoming/policy.yaml": (examples / "policy.yaml").read_bytes(),
        "incoming/segments/new_signups.yaml": (examples / "segments" / "new_signups.yaml").read_bytes(),
        "incoming/campaigns/fidelity_notice.yaml": FIDELITY_CAMPAIGN.encode(),
    }
    (activation,) = _run_activation(deployed, envs["ActivateRulesFunction"], files)["results"]
    assert activation["activated"] is True, activation
    # and the customers' exports in the stack's data bucket: three fresh sign-ups who have not bought
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    data_env = envs["RecomputeSegmentsFunction"]
    signed_up = (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    viewed = (now - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    customers = "user_id,signup_at,timezone,email,consent_email,name\n" + "".join(
        f"{i},{signed_up},Asia/Seoul,user{i}@customers.example,true,{name}\n"
        for i, name in ((1, "민지"), (2, "서준"), (3, "하은"))
    )
    events = "user_id,ts,event_type\n" + "".join(f"{i},{viewed},page_view\n" for i in (1, 2, 3))
    s3 = deployed.client("s3")
    prefix = data_env["DATA_PREFIX"]
    s3.put_object(Bucket=data_env["DATA_BUCKET"], Key=f"{prefix}customers/customers.csv", Body=customers.encode())
    s3.put_object(Bucket=data_env["DATA_BUCKET"], Key=f"{prefix}events/events.csv", Body=events.encode())

    # When the recompute schedule fires RecomputeSegmentsFunction with its environment
    recomputed = _invoke(
        "recompute_segments", data_env, _schedule_input(deployed, "RecomputeSchedule", now), "recompute"
    )
    # Then the snapshot it wrote is the latest one, for the active rules
    latest = json.loads(s3.get_object(Bucket=data_env["DATA_BUCKET"], Key="segments/latest.json")["Body"].read())
    assert latest["rules_hash"] == activation["rules_hash"] == recomputed["rules_hash"]

    # and the set-up a real deploy does by hand: the SES identity and configuration set, the feedback secret
    sender_env = envs["SendEmailFunction"]
    deployed.client("ses").verify_domain_identity(Domain=sender_env["SES_FROM_ADDRESS"].split("@", 1)[1])
    sesv2 = deployed.client("sesv2")
    if sender_env["SES_CONFIGURATION_SET"] not in sesv2.list_configuration_sets().get("ConfigurationSets", []):
        sesv2.create_configuration_set(ConfigurationSetName=sender_env["SES_CONFIGURATION_SET"])
    deployed.client("ssm").put_parameter(
        Name=sender_env["FEEDBACK_SECRET_PARAMETER"], Value="fidelity-secret", Type="SecureString", Overwrite=True
    )

    # When the campaign's schedule fires the planner with PlanCampaignFunction's environment
    summary = _invoke(
        "plan_campaign",
        envs["PlanCampaignFunction"],
        {"campaign_id": "fidelity_notice", "scheduled_time": now.isoformat()},
        "plan",
    )
    assert summary["status"] == "done", summary
    # Then the jobs are in the queue the email sender polls (as the stack wired it)
    email_queue = sender_env["QUEUE_URL_EMAIL"]
    sqs = deployed.client("sqs")
    messages = sqs.receive_message(QueueUrl=email_queue, MaxNumberOfMessages=10)["Messages"]
    assert messages

    # When the email sender receives them as its event source mapping would deliver them
    queue_arn = sqs.get_queue_attributes(QueueUrl=email_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    response = _invoke("send_message", sender_env, _sqs_event(messages, queue_arn), "send-email")
    # Then every job succeeded, and each of the three users has a delivery record in the data bucket
    assert response == {"batchItemFailures": []}
    keys = [
        item["Key"]
        for item in s3.list_objects_v2(Bucket=sender_env["DATA_BUCKET"], Prefix="deliveries/").get("Contents", [])
    ]
    records = [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=sender_env["DATA_BUCKET"], Key=key)["Body"].read().decode().splitlines()
        if line.strip()
    ]
    sent = {str(record["user_id"]) for record in records if record["status"] == "sent"}
    assert sent == {"1", "2", "3"}, records
    # And SES reports an open of user 1's email through the topic -> queue -> feedback function wiring
    _ingest_an_open(deployed, next(r for r in records if str(r["user_id"]) == "1"))
    # And the daily report schedule's own input builds the report in the stack's data bucket
    _build_the_report(deployed, now + timedelta(hours=1))


def _schedule_input(deployed: Deployed, logical_id: str, fired_at: datetime) -> dict[str, Any]:
    """The event EventBridge Scheduler sends: the template's Input with its context attribute filled in."""
    text = deployed.stack.translated["Resources"][logical_id]["Properties"]["Target"]["Input"]
    event: dict[str, Any] = json.loads(
        text.replace("<aws.scheduler.scheduled-time>", fired_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    )
    return event


def _build_the_report(deployed: Deployed, fired_at: datetime) -> None:
    env = deployed.environments["BuildReportFunction"]
    result = _invoke("build_report", env, _schedule_input(deployed, "ReportSchedule", fired_at), "report")
    # Then KPIs and the HTML page are in the data bucket, and they count the three sends
    s3 = deployed.client("s3")
    for key in result["keys"]:
        s3.head_object(Bucket=env["DATA_BUCKET"], Key=key)
    assert any(key.endswith("report.html") for key in result["keys"]), result
    import io

    import pandas as pd

    kpis_key = next(key for key in result["keys"] if key.endswith("kpis.parquet"))
    kpis = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=env["DATA_BUCKET"], Key=kpis_key)["Body"].read()))
    campaign = kpis[kpis["campaign_id"] == "fidelity_notice"]
    assert int(campaign["sent"].sum()) == 3, kpis.to_dict("records")
    assert int(campaign["opened"].sum()) == 1, kpis.to_dict("records")


def _ingest_an_open(deployed: Deployed, delivered: dict[str, Any]) -> None:
    resources = deployed.stack.translated["Resources"]
    sns, sqs, s3 = (deployed.client(s) for s in ("sns", "sqs", "s3"))
    # Given the SNS -> SQS subscription moto's CloudFormation skipped, created as the template defines it
    subscription = resources["SesEventsSubscription"]["Properties"]
    topic_arn = deployed.stack.physical_ids[subscription["TopicArn"]["Ref"]]
    queue_url = deployed.stack.physical_ids[subscription["Endpoint"]["Fn::GetAtt"][0]]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol=subscription["Protocol"], Endpoint=queue_arn)
    feedback_env = deployed.environments["IngestFeedbackFunction"]
    assert feedback_env["FEEDBACK_QUEUE_URL"] == queue_url
    assert deployed.stack.outputs["SesEventsTopicArn"] == topic_arn
    # When SES event publishing sends an Open carrying the send_id tag the sender set
    opened_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    record = {
        "eventType": "Open",
        "mail": {
            "timestamp": opened_at,
            "messageId": "fidelity-ses-1",
            "tags": {"send_id": [delivered["send_id"]], "campaign_id": [delivered["campaign_id"]]},
        },
        "open": {"timestamp": opened_at, "ipAddress": "203.0.113.9", "userAgent": "fidelity"},
    }
    sns.publish(TopicArn=topic_arn, Message=json.dumps(record))
    received = sqs.receive_message(QueueUrl=feedback_env["FEEDBACK_QUEUE_URL"], MaxNumberOfMessages=10)["Messages"]
    response = _invoke("ingest_feedback", feedback_env, _sqs_event(received, queue_arn), "ingest-feedback")
    # Then the open is stored under feedback/events/ for that send, in the stack's data bucket
    assert response == {"batchItemFailures": []}
    bucket = feedback_env["DATA_BUCKET"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="feedback/events/").get("Contents", [])]
    stored = [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
        if line.strip()
    ]
    assert any(e["send_id"] == delivered["send_id"] and e["type"] == "opened" for e in stored), stored
