"""The ``aws`` fixture stands up every data resource template.yaml declares, as the template defines it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from funnelcast.local.aws_env import CREATED_TYPES, LocalAws, load_template
from funnelcast.settings import CHANNELS, get_settings

CHANNEL_QUEUES = ("Email", "Sms", "Push", "KakaoAlimtalk", "KakaoBrand", "Webhook")


@pytest.fixture(scope="module")
def template(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_template(request.config.rootpath / "template.yaml")


def _of_type(template: dict[str, Any], kind: str) -> list[str]:
    return [logical_id for logical_id, d in template["Resources"].items() if d["Type"] == kind]


def test_every_declared_data_resource_exists_in_moto(aws: LocalAws, template: dict[str, Any]) -> None:
    # Given the template's buckets, tables, queues, topics and schedule group
    # When the fixture has run
    # Then each one is found in moto under the name the functions' environment uses
    buckets = {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}
    tables = set(aws.client("dynamodb").list_tables()["TableNames"])
    queues = set(aws.client("sqs").list_queues().get("QueueUrls", []))
    topics = {t["TopicArn"] for t in aws.client("sns").list_topics()["Topics"]}
    groups = {g["Name"] for g in aws.client("scheduler").list_schedule_groups()["ScheduleGroups"]}
    expected = {
        "AWS::S3::Bucket": buckets,
        "AWS::DynamoDB::Table": tables,
        "AWS::SQS::Queue": queues,
        "AWS::SNS::Topic": topics,
        "AWS::Scheduler::ScheduleGroup": groups,
    }
    for kind, found in expected.items():
        declared = _of_type(template, kind)
        assert declared, f"template.yaml declares no {kind}"
        for logical_id in declared:
            assert aws.names[logical_id] in found, f"{logical_id} ({kind}) missing in moto"
    assert set(expected) <= CREATED_TYPES


def test_environment_names_the_created_resources(aws: LocalAws) -> None:
    # Given the fixture, when funnelcast reads its settings, then they name the template's resources
    settings = get_settings()
    assert settings.rules_bucket == aws.names["RulesBucket"]
    assert settings.data_bucket == aws.names["DataBucket"]
    assert settings.cap_table == aws.names["CapTable"]
    assert settings.state_table == aws.names["StateTable"]
    assert settings.idempotency_table == aws.names["IdempotencyTable"]
    assert settings.feedback_queue_url == aws.names["FeedbackQueue"]
    assert settings.schedule_group == aws.names["ScheduleGroup"]
    assert settings.scheduler_role_arn == aws.arns["SchedulerRole"]
    for channel, queue in zip(CHANNELS, CHANNEL_QUEUES, strict=True):
        assert settings.queue_url(channel) == aws.names[f"{queue}Queue"]
    assert aws.settings == settings


def test_tables_have_the_template_keys_and_ttl(aws: LocalAws, template: dict[str, Any]) -> None:
    # Given each table's definition, then key schema and TTL attribute in moto match it
    ddb = aws.client("dynamodb")
    for logical_id in _of_type(template, "AWS::DynamoDB::Table"):
        properties = template["Resources"][logical_id]["Properties"]
        table = ddb.describe_table(TableName=aws.names[logical_id])["Table"]
        assert table["KeySchema"] == properties["KeySchema"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = ddb.describe_time_to_live(TableName=aws.names[logical_id])["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] == "ENABLED"
        assert ttl["AttributeName"] == properties["TimeToLiveSpecification"]["AttributeName"]


def test_channel_queues_redrive_to_their_dlq(aws: LocalAws) -> None:
    # Given a channel queue, then its redrive policy points at its own DLQ after 5 receives
    sqs = aws.client("sqs")
    for queue in (*CHANNEL_QUEUES, "Feedback"):
        attributes = sqs.get_queue_attributes(QueueUrl=aws.names[f"{queue}Queue"], AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == aws.arns[f"{queue}DLQ"]
        assert int(redrive["maxReceiveCount"]) == 5
        # six times the polling function's timeout (30 s senders, 120 s feedback)
        assert int(attributes["VisibilityTimeout"]) == (720 if queue == "Feedback" else 180)


def test_ses_events_reach_the_feedback_queue(aws: LocalAws) -> None:
    # Given the SES events topic subscribed to the feedback queue
    # When an event is published
    aws.client("sns").publish(TopicArn=aws.names["SesEventsTopic"], Message=json.dumps({"eventType": "Open"}))
    # Then the feedback function's queue receives it in the SNS envelope
    messages = aws.client("sqs").receive_message(QueueUrl=aws.names["FeedbackQueue"], MaxNumberOfMessages=1)
    body = json.loads(messages["Messages"][0]["Body"])
    assert json.loads(body["Message"]) == {"eventType": "Open"}


def test_senders_each_get_their_channel_and_queue(aws: LocalAws) -> None:
    # Given the six sender functions, then each has CHANNEL and polls that channel's queue
    for channel, queue in zip(CHANNELS, CHANNEL_QUEUES, strict=True):
        sender = aws.sender_for(channel)
        assert sender.handler == "send_message.lambda_handler"
        (source,) = sender.sqs_sources
        assert source.queue == f"{queue}Queue"
        assert source.report_batch_item_failures
        assert aws.function_env(sender.logical_id)["CHANNEL"] == channel


def test_secrets_are_readable_like_a_deploy(aws: LocalAws) -> None:
    # Given the feedback secret parameter name from the template, then moto SSM holds it encrypted
    name = aws.settings.feedback_secret_parameter
    value = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    assert value == aws.secrets[name]
