"""template.yaml through the SAM transform (offline): layers, event sources, DLQs, scoped policies.

What `sam deploy` would create is asserted on the transform's output, so a property SAM ignores or
rewrites (a layer listed in the wrong place, an event missing ReportBatchItemFailures) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from funnelcast.local.aws_env import load_template
from funnelcast.local.stack import code_locations, package, translate

ROOT = Path(__file__).resolve().parents[2]
REGION = "ap-northeast-2"
SENDERS = (
    "SendEmailFunction",
    "SendSmsFunction",
    "SendPushFunction",
    "SendKakaoAlimtalkFunction",
    "SendKakaoBrandFunction",
    "SendWebhookFunction",
)
DATA_FUNCTIONS = ("RecomputeSegmentsFunction", "PlanCampaignFunction", "BuildReportFunction", "IngestFeedbackFunction")
# Actions on data (objects, items, messages, sends): never allowed on every resource.
DATA_ACTION = re.compile(r"^(s3|dynamodb|sqs|sns|ses|sms-voice|ssm|lambda):|^scheduler:(Create|Update|Delete|Get)")


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def cfn(source: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template SAM would deploy (code locations replaced by S3 URIs)."""
    keys = {logical_id: f"{logical_id}.zip" for logical_id in code_locations(source)}
    return translate(package(source, "artifacts", keys), REGION)


def _resources(cfn: dict[str, Any], kind: str) -> dict[str, Any]:
    return {logical_id: d for logical_id, d in cfn["Resources"].items() if d["Type"] == kind}


def _ref(value: Any) -> str:
    """The logical id a {"Ref": ...} or {"Fn::GetAtt": [...]} points at."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    raise AssertionError(f"not a reference: {value!r}")


def _layer_base(cfn: dict[str, Any], logical_id: str) -> str:
    """SAM renames layers to <id><hash>; map the versioned id back to the template's id."""
    return next(base for base in ("CoreLayer", "DataLayer") if logical_id.startswith(base))


def test_every_function_of_the_architecture_exists_with_its_handler(source: dict[str, Any]) -> None:
    # Given docs/ARCHITECTURE.md's function table, then each is declared with functions/<name>/<name>.handler
    expected = {
        "ActivateRulesFunction": "activate_rules",
        "RecomputeSegmentsFunction": "recompute_segments",
        "PlanCampaignFunction": "plan_campaign",
        "IngestFeedbackFunction": "ingest_feedback",
        "BuildReportFunction": "build_report",
        **dict.fromkeys(SENDERS, "send_message"),
    }
    functions = {k: d for k, d in source["Resources"].items() if d["Type"] == "AWS::Serverless::Function"}
    assert set(functions) == set(expected)
    for logical_id, name in expected.items():
        properties = functions[logical_id]["Properties"]
        assert properties["CodeUri"].rstrip("/") == f"functions/{name}"
        assert properties["Handler"] == f"{name}.lambda_handler"


def test_runtime_architecture_and_tracing_for_every_function(cfn: dict[str, Any]) -> None:
    for logical_id, function in _resources(cfn, "AWS::Lambda::Function").items():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.13", logical_id
        assert properties["Architectures"] == ["arm64"], logical_id
        assert properties["TracingConfig"] == {"Mode": "Active"}, logical_id
        env = properties["Environment"]["Variables"]
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "funnelcast"


def test_senders_get_only_the_core_layer_and_data_functions_both(cfn: dict[str, Any]) -> None:
    # Given the translated functions, then senders never load pandas (no DataLayer), data functions have it
    functions = _resources(cfn, "AWS::Lambda::Function")
    for logical_id, function in functions.items():
        layers = [_layer_base(cfn, _ref(layer)) for layer in function["Properties"].get("Layers", [])]
        if logical_id in DATA_FUNCTIONS:
            assert sorted(layers) == ["CoreLayer", "DataLayer"], logical_id
        else:
            assert layers == ["CoreLayer"], logical_id
    for logical_id in SENDERS:
        assert functions[logical_id]["Properties"]["Environment"]["Variables"]["CHANNEL"]


def test_layers_target_arm64_python313(cfn: dict[str, Any]) -> None:
    layers = _resources(cfn, "AWS::Lambda::LayerVersion")
    assert {_layer_base(cfn, logical_id) for logical_id in layers} == {"CoreLayer", "DataLayer"}
    for layer in layers.values():
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_every_sqs_event_source_reports_partial_batch_failures(cfn: dict[str, Any]) -> None:
    mappings = _resources(cfn, "AWS::Lambda::EventSourceMapping")
    polled = set()
    for logical_id, mapping in mappings.items():
        properties = mapping["Properties"]
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"], logical_id
        assert 1 <= properties["BatchSize"] <= 10, logical_id
        polled.add(_ref(properties["EventSourceArn"]))
    assert polled == {
        "EmailQueue",
        "SmsQueue",
        "PushQueue",
        "KakaoAlimtalkQueue",
        "KakaoBrandQueue",
        "WebhookQueue",
        "FeedbackQueue",
    }


def test_every_polled_queue_has_a_dlq_and_a_visibility_of_six_timeouts(cfn: dict[str, Any]) -> None:
    functions = _resources(cfn, "AWS::Lambda::Function")
    queues = _resources(cfn, "AWS::SQS::Queue")
    for mapping in _resources(cfn, "AWS::Lambda::EventSourceMapping").values():
        queue = queues[_ref(mapping["Properties"]["EventSourceArn"])]["Properties"]
        function = functions[_ref(mapping["Properties"]["FunctionName"])]["Properties"]
        assert _ref(queue["RedrivePolicy"]["deadLetterTargetArn"]).endswith("DLQ")
        assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
        assert queue["VisibilityTimeout"] == 6 * function["Timeout"]
        assert queue["SqsManagedSseEnabled"] is True


def test_tables_have_ttl_pitr_and_encryption(cfn: dict[str, Any]) -> None:
    tables = _resources(cfn, "AWS::DynamoDB::Table")
    assert set(tables) == {"CapTable", "StateTable", "IdempotencyTable"}
    for logical_id, table in tables.items():
        properties = table["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["SSESpecification"] == {"SSEEnabled": True}
        expected_ttl = "expiration" if logical_id == "IdempotencyTable" else "expires_at"
        assert properties["TimeToLiveSpecification"] == {"AttributeName": expected_ttl, "Enabled": True}
        if logical_id != "IdempotencyTable":
            assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_buckets_are_private_encrypted_and_versioned(cfn: dict[str, Any]) -> None:
    for logical_id, bucket in _resources(cfn, "AWS::S3::Bucket").items():
        properties = bucket["Properties"]
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
        assert all(properties["PublicAccessBlockConfiguration"].values()), logical_id


def test_rule_uploads_trigger_activation(cfn: dict[str, Any]) -> None:
    # Given the rules bucket, then an ObjectCreated under incoming/ invokes the activation function
    rules = cfn["Resources"]["RulesBucket"]["Properties"]
    (notification,) = rules["NotificationConfiguration"]["LambdaConfigurations"]
    assert _ref(notification["Function"]) == "ActivateRulesFunction"
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]


def test_scheduler_runs_recompute_and_report_with_its_role(cfn: dict[str, Any]) -> None:
    schedules = _resources(cfn, "AWS::Scheduler::Schedule")
    targets = {_ref(s["Properties"]["Target"]["Arn"]) for s in schedules.values()}
    assert targets == {"RecomputeSegmentsFunction", "BuildReportFunction"}
    for schedule in schedules.values():
        assert _ref(schedule["Properties"]["Target"]["RoleArn"]) == "SchedulerRole"
        assert _ref(schedule["Properties"]["GroupName"]) == "ScheduleGroup"
    role = cfn["Resources"]["SchedulerRole"]["Properties"]
    principal = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "scheduler.amazonaws.com"}


def test_feedback_function_has_a_public_url_and_the_topic_feeds_its_queue(cfn: dict[str, Any]) -> None:
    (url,) = _resources(cfn, "AWS::Lambda::Url").values()
    assert _ref(url["Properties"]["TargetFunctionArn"]) == "IngestFeedbackFunction"
    assert url["Properties"]["AuthType"] == "NONE"  # the function checks an HMAC signature
    subscription = cfn["Resources"]["SesEventsSubscription"]["Properties"]
    assert (_ref(subscription["TopicArn"]), _ref(subscription["Endpoint"])) == ("SesEventsTopic", "FeedbackQueue")


def _statements(cfn: dict[str, Any], function: str) -> list[dict[str, Any]]:
    role = cfn["Resources"][f"{function}Role"]["Properties"]
    statements = []
    for policy in role.get("Policies", []):
        statements.extend(policy["PolicyDocument"]["Statement"])
    return statements


def test_no_data_action_is_allowed_on_every_resource(cfn: dict[str, Any]) -> None:
    # Given every function role, then S3/DynamoDB/SQS/SNS/SES/SMS/SSM actions name their resources
    for function in _resources(cfn, "AWS::Lambda::Function"):
        for statement in _statements(cfn, function):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if any(DATA_ACTION.match(action) for action in actions):
                assert "*" not in resources, (function, actions)


def test_each_sender_may_call_only_its_own_provider(cfn: dict[str, Any]) -> None:
    provider_actions = {
        "SendEmailFunction": "ses:SendEmail",
        "SendSmsFunction": "sms-voice:SendTextMessage",
        "SendPushFunction": "sns:Publish",
    }
    for sender in SENDERS:
        actions = set()
        for statement in _statements(cfn, sender):
            actions.update(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
        for owner, action in provider_actions.items():
            assert (action in actions) == (owner == sender), (sender, action)
        # every sender may re-enqueue a fallback to any channel queue
        queues = {
            _ref(statement["Resource"]["Fn::Sub"][1]["queueName"])
            for statement in _statements(cfn, sender)
            if "sqs:SendMessage*" in statement["Action"]
        }
        assert queues == {f"{q}Queue" for q in ("Email", "Sms", "Push", "KakaoAlimtalk", "KakaoBrand", "Webhook")}


def test_functions_read_the_names_they_need_from_the_environment(cfn: dict[str, Any]) -> None:
    # Given settings.py's variables, then every function gets the shared names (none left empty)
    shared = (
        "RULES_BUCKET",
        "DATA_BUCKET",
        "CAP_TABLE",
        "STATE_TABLE",
        "IDEMPOTENCY_TABLE",
        "QUEUE_URL_EMAIL",
        "QUEUE_URL_SMS",
        "QUEUE_URL_PUSH",
        "QUEUE_URL_KAKAO_ALIMTALK",
        "QUEUE_URL_KAKAO_BRAND",
        "QUEUE_URL_WEBHOOK",
        "FEEDBACK_QUEUE_URL",
        "SCHEDULE_GROUP",
        "SCHEDULER_ROLE_ARN",
        "PLANNER_FUNCTION_ARN",
    )
    for logical_id, function in _resources(cfn, "AWS::Lambda::Function").items():
        env = function["Properties"]["Environment"]["Variables"]
        missing = [name for name in shared if not env.get(name)]
        assert not missing, (logical_id, missing)


def test_every_dlq_has_an_alarm_and_send_failures_alarm(cfn: dict[str, Any]) -> None:
    alarms = _resources(cfn, "AWS::CloudWatch::Alarm")
    watched = {
        _ref(alarm["Properties"]["Dimensions"][0]["Value"])
        for alarm in alarms.values()
        if alarm["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    dlqs = {logical_id for logical_id in _resources(cfn, "AWS::SQS::Queue") if logical_id.endswith("DLQ")}
    assert watched == dlqs
    failures = alarms["SendFailuresAlarm"]["Properties"]["Metrics"]
    channels = {
        dimension["Value"]
        for query in failures
        if "MetricStat" in query
        for dimension in query["MetricStat"]["Metric"]["Dimensions"]
        if dimension["Name"] == "channel"
    }
    assert channels == {"email", "sms", "push", "kakao_alimtalk", "kakao_brand", "webhook"}


def test_dashboard_body_is_valid_json_with_the_promised_widgets(cfn: dict[str, Any]) -> None:
    body = cfn["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    document = json.loads(re.sub(r"\$\{[^}!]+\}", "x", body))
    titles = " | ".join(widget["properties"]["title"] for widget in document["widgets"])
    for promised in ("Sends per channel", "failures", "caps", "Dead-letter queue depth", "Segment sizes"):
        assert promised.lower() in titles.lower()


def test_outputs_name_every_bucket_table_queue_and_function(cfn: dict[str, Any]) -> None:
    referenced = {
        _ref(output["Value"]) for output in cfn["Outputs"].values() if set(output["Value"]) & {"Ref", "Fn::GetAtt"}
    }
    for kind in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::Lambda::Function", "AWS::SNS::Topic"):
        assert set(_resources(cfn, kind)) <= referenced, kind
    channel_queues = {k for k in _resources(cfn, "AWS::SQS::Queue") if not k.endswith("DLQ")}
    assert channel_queues <= referenced
