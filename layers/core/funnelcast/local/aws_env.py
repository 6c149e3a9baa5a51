"""Stand up template.yaml's own resources in moto (tests and ``funnelcast demo``).

Nothing here is a second copy of the infrastructure: buckets, tables (key schema, TTL, PITR),
queues (attributes, redrive to their DLQ), topics and subscriptions, queue policies, the scheduler
group and schedules, the scheduler role and the SES configuration set are all read from
``template.yaml`` and created with boto3, so a definition changed in the template changes what the
tests and the demo run against. Function environment variables are resolved from the template the
way CloudFormation would (``!Ref``, ``!Sub``, ``!GetAtt``, ``!If`` ...), with deterministic physical
names (``<stack>-<logical id in lower case>`` unless the template names the resource).

Use it inside ``moto.mock_aws()`` (in process) or against a ``ThreadedMotoServer`` by passing
``endpoint_url``::

    with mock_aws():
        local = create_resources("template.yaml")
        local.install(os.environ)  # function env + fake credentials + region

moto never runs Lambda code: functions are not created; ``LocalAws.functions`` tells a dispatcher
which handler serves which queue (the demo drains queues into handlers in process).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from funnelcast.errors import ConfigurationError
from funnelcast.settings import Settings

DEFAULT_REGION = "ap-northeast-2"
DEFAULT_STACK_NAME = "funnelcast"
MOTO_ACCOUNT_ID = "123456789012"
PARTITION = "aws"

FAKE_CREDENTIALS: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

# Values for template parameters that have no usable default locally (a real deploy sets them).
LOCAL_PARAMETERS: dict[str, str] = {
    "SesIdentity": "funnelcast.example",
    "SesFromAddress": "no-reply@funnelcast.example",
    "SmsOriginationIdentity": "pool-funnelcast-local",
    "KakaoBaseUrl": "https://kakao-vendor.funnelcast.example",
    "KakaoSenderKey": "local-sender-key",
    "WebhookUrl": "https://hooks.funnelcast.example/send",
    "WebhookAllowedHosts": "hooks.funnelcast.example",
    "UnsubscribeBaseUrl": "https://funnelcast.example/unsubscribe",
    "LinkBaseUrl": "https://funnelcast.example/l",
}

# SSM SecureString parameters the functions read (parameter logical id -> local secret value).
LOCAL_SECRETS: dict[str, str] = {
    "FeedbackSecretParameterName": "local-feedback-secret",
    "KakaoApiKeyParameterName": "local-kakao-api-key",
    "WebhookSecretParameterName": "local-webhook-secret",
}

_NAME_PROPERTIES = (
    "BucketName",
    "TableName",
    "QueueName",
    "TopicName",
    "Name",
    "FunctionName",
    "RoleName",
    "LayerName",
)
_NO_VALUE = object()


class TemplateError(ConfigurationError):
    """template.yaml cannot be read or uses a construct the local resolver does not know."""


# ----------------------------------------------------------------------------- YAML with CFN tags


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (``!Ref``, ``!Sub``...) into their long form."""


def _long_form(name: str) -> Callable[[yaml.Loader, yaml.Node], Any]:
    def construct(loader: yaml.Loader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        key = "Ref" if name == "Ref" else name
        return {key: value}

    return construct


for _tag in ("Ref", "Condition"):
    CfnLoader.add_constructor(f"!{_tag}", _long_form(_tag))
for _tag in (
    "Sub",
    "GetAtt",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Join",
    "Select",
    "Split",
    "FindInMap",
    "Base64",
    "ImportValue",
    "GetAZs",
    "Cidr",
    "Length",
    "ToJsonString",
):
    CfnLoader.add_constructor(f"!{_tag}", _long_form(f"Fn::{_tag}"))


def load_template(path: str | Path) -> dict[str, Any]:
    """template.yaml as a dict in CloudFormation long form (parsed once per file version)."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read the template ({exc.strerror})") from exc
    return _parse_template(str(resolved), stat.st_mtime_ns, stat.st_size)


@cache
def _parse_template(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    del mtime_ns, size  # only part of the cache key
    with open(path, encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=CfnLoader)  # noqa: S506  (SafeLoader subclass)
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources mapping)")
    return document


# ----------------------------------------------------------------------------- what the caller gets


@dataclass(frozen=True)
class SqsSource:
    """An SQS event source of a function (what the Lambda event source mapping would poll)."""

    queue: str  # logical id
    queue_url: str
    batch_size: int
    report_batch_item_failures: bool


@dataclass(frozen=True)
class LocalFunction:
    """A function of the template: where its code is and the environment CloudFormation would give it."""

    logical_id: str
    name: str
    code_uri: str
    handler: str
    environment: dict[str, str]
    layers: tuple[str, ...]
    sqs_sources: tuple[SqsSource, ...]

    @property
    def module(self) -> str:
        """The handler module name (``send_message`` for ``send_message.lambda_handler``)."""
        return self.handler.rsplit(".", 1)[0]


@dataclass
class LocalAws:
    """The template's resources standing in moto, and the environment its functions would see."""

    region: str
    endpoint_url: str | None
    stack_name: str
    account_id: str
    names: dict[str, str]
    """logical id -> what ``!Ref`` returns: bucket/table/group name, queue URL, topic/role ARN."""
    arns: dict[str, str]
    """logical id -> ARN of every resource that has one."""
    env: dict[str, str]
    """Environment shared by every function (Globals + region/endpoint), without per-function CHANNEL."""
    functions: dict[str, LocalFunction]
    parameters: dict[str, str]
    secrets: dict[str, str] = field(default_factory=dict)
    """SSM parameter name -> local secret value (created as SecureString)."""
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def settings(self) -> Settings:
        """Settings as a function reading ``env`` would build them."""
        return Settings.from_env(self.env)

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` in this region (and endpoint, in server mode)."""
        if service not in self._clients:
            self._clients[service] = boto_client(service, self.region, self.endpoint_url)
        return self._clients[service]

    def function_env(self, logical_id: str) -> dict[str, str]:
        """The full environment of one function (``SendSmsFunction`` -> ``CHANNEL=sms`` ...)."""
        try:
            function = self.functions[logical_id]
        except KeyError:
            raise TemplateError(f"template.yaml has no function {logical_id!r}") from None
        return {**self.env, **function.environment}

    def sender_for(self, channel: str) -> LocalFunction:
        """The sender function whose CHANNEL is ``channel``."""
        for function in self.functions.values():
            if function.environment.get("CHANNEL") == channel:
                return function
        raise TemplateError(f"template.yaml has no sender function with CHANNEL={channel}")

    def install(self, environ: MutableMapping[str, str], logical_id: str | None = None) -> None:
        """Put fake credentials and the (function's) environment into ``environ`` (e.g. ``os.environ``).

        Callers must clear ``funnelcast.aws.clients.client`` and ``funnelcast.settings.get_settings``
        caches afterwards (``reset_caches()``) so the next call reads the new values.
        """
        values = self.function_env(logical_id) if logical_id else self.env
        environ.update(FAKE_CREDENTIALS)
        environ.update(values)


def reset_caches() -> None:
    """Forget cached boto3 clients and settings (after the environment changed)."""
    from funnelcast.aws.clients import client  # noqa: PLC0415
    from funnelcast.settings import get_settings  # noqa: PLC0415

    client.cache_clear()
    get_settings.cache_clear()


@cache
def boto_client(service: str, region: str = DEFAULT_REGION, endpoint_url: str | None = None) -> Any:
    """A boto3 client with moto's fake credentials (typed ``Any``: services are chosen by name).

    Clients are cached for the process: building one costs ~80 ms, and moto's in-process mock
    intercepts every client whenever ``mock_aws`` is active, so reuse across fixtures is safe."""
    return _session(region).client(service, endpoint_url=endpoint_url)


@cache
def _session(region: str) -> Any:
    import boto3  # noqa: PLC0415  (adapter module: boto3 only when resources are created)

    return boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )


# ----------------------------------------------------------------------------- intrinsic functions


class _Resolver:
    """Resolves intrinsic functions against parameters, pseudo parameters and created resources."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str], pseudo: Mapping[str, str]) -> None:
        self.template = template
        self.parameters = dict(parameters)
        self.pseudo = dict(pseudo)
        self.refs: dict[str, str] = {}
        self.attributes: dict[str, dict[str, str]] = {}
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definition = self.template.get("Conditions", {}).get(name)
            if definition is None:
                raise TemplateError(f"template.yaml: unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(definition))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        raise TemplateError(f"template.yaml: !Ref {name} names nothing the local environment created")

    def get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self.attributes[logical_id][attribute]
        except KeyError:
            raise TemplateError(f"template.yaml: !GetAtt {logical_id}.{attribute} is not known locally") from None

    def _substitute(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] not in self.pseudo:
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Sub":
                if isinstance(argument, list):
                    text, variables = argument
                    return self._substitute(text, {k: self.resolve(v) for k, v in variables.items()})
                return self._substitute(argument, {})
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(item) for item in argument)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(item) for item in argument)
            if key == "Fn::Or":
                return any(self.resolve(item) for item in argument)
            if key == "Condition" and isinstance(argument, str):
                return self.condition(argument)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key == "Fn::ToJsonString":
                return json.dumps(self.resolve(argument))
            if key.startswith("Fn::"):
                raise TemplateError(f"template.yaml: {key} is not supported by the local resolver")
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}


# ----------------------------------------------------------------------------- creation


def create_resources(
    template_path: str | Path = "template.yaml",
    region: str = DEFAULT_REGION,
    endpoint_url: str | None = None,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    parameters: Mapping[str, str] | None = None,
) -> LocalAws:
    """Create every data resource of ``template_path`` in moto and resolve the functions' environment.

    Parameters
    ----------
    template_path:
        The SAM template (``template.yaml`` at the repository root).
    region:
        Region of the clients and of the environment (``AWS_DEFAULT_REGION``).
    endpoint_url:
        A moto server (``ThreadedMotoServer``) to create the resources in; ``None`` means in-process
        moto, so the caller must be inside ``moto.mock_aws()``.
    stack_name:
        Plays ``AWS::StackName``: the prefix of physical names.
    parameters:
        Overrides of template parameters (on top of ``LOCAL_PARAMETERS`` and the defaults).
    """
    template = load_template(template_path)
    values = _parameter_values(template, parameters or {})
    pseudo = {
        "AWS::StackName": stack_name,
        "AWS::AccountId": MOTO_ACCOUNT_ID,
        "AWS::Region": region,
        "AWS::Partition": PARTITION,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackId": f"arn:{PARTITION}:cloudformation:{region}:{MOTO_ACCOUNT_ID}:stack/{stack_name}/local",
    }
    resolver = _Resolver(template, values, pseudo)
    local = LocalAws(
        region=region,
        endpoint_url=endpoint_url,
        stack_name=stack_name,
        account_id=MOTO_ACCOUNT_ID,
        names=resolver.refs,
        arns={},
        env={},
        functions={},
        parameters=values,
    )
    resources: dict[str, dict[str, Any]] = template["Resources"]
    active = {
        logical_id: definition
        for logical_id, definition in resources.items()
        if "Condition" not in definition or resolver.condition(definition["Condition"])
    }
    _register_deterministic(active, resolver, local)
    for kind, creator in _CREATORS:
        for logical_id, definition in _in_creation_order(kind, active):
            creator(local, resolver, logical_id, resolver.resolve(definition.get("Properties", {})))
    local.arns = {logical_id: attrs["Arn"] for logical_id, attrs in resolver.attributes.items() if "Arn" in attrs}
    _create_secrets(local)
    _resolve_functions(template, active, resolver, local)
    return local


def _parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, definition in template.get("Parameters", {}).items():
        default = definition.get("Default")
        values[name] = "" if default is None else str(default)
    for name, value in {**LOCAL_PARAMETERS, **overrides}.items():
        if name in values:
            values[name] = value
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise TemplateError(f"template.yaml has no parameter(s) {', '.join(unknown)}")
    return values


def _physical_name(logical_id: str, properties: Mapping[str, Any], resolver: _Resolver) -> str:
    for key in _NAME_PROPERTIES:
        if key in properties:
            return str(resolver.resolve(properties[key]))
    return f"{resolver.pseudo['AWS::StackName']}-{logical_id.lower()}"


def _register_deterministic(resources: Mapping[str, Any], resolver: _Resolver, local: LocalAws) -> None:
    """Names and ARNs known without creating anything (functions, layers), so others can refer to them."""
    region, account = local.region, local.account_id
    for logical_id, definition in resources.items():
        kind = definition.get("Type")
        properties = definition.get("Properties", {})
        if kind == "AWS::Serverless::Function":
            name = _physical_name(logical_id, properties, resolver)
            arn = f"arn:{PARTITION}:lambda:{region}:{account}:function:{name}"
            resolver.refs[logical_id] = name
            resolver.attributes[logical_id] = {"Arn": arn}
            url_id = f"{logical_id}Url"
            resolver.attributes[url_id] = {"FunctionUrl": f"https://{name}.lambda-url.{region}.on.aws/"}
        elif kind == "AWS::Serverless::LayerVersion":
            name = _physical_name(logical_id, properties, resolver)
            arn = f"arn:{PARTITION}:lambda:{region}:{account}:layer:{name}:1"
            resolver.refs[logical_id] = arn
            resolver.attributes[logical_id] = {"Arn": arn}


def _in_creation_order(kind: str, resources: Mapping[str, Any]) -> list[tuple[str, Any]]:
    chosen = [(logical_id, d) for logical_id, d in resources.items() if d.get("Type") == kind]
    if kind == "AWS::SQS::Queue":
        # Dead-letter queues first: a queue's redrive policy needs its DLQ's ARN.
        chosen.sort(key=lambda item: "RedrivePolicy" in item[1].get("Properties", {}))
    return chosen


def _bucket(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    s3 = local.client("s3")
    name = _physical_name(logical_id, properties, resolver)
    if local.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": local.region})
    if "VersioningConfiguration" in properties:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": properties["VersioningConfiguration"]["Status"]}
        )
    encryption = properties.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration")
    if encryption:
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]} for rule in encryption
                ]
            },
        )
    if "PublicAccessBlockConfiguration" in properties:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
        )
    resolver.refs[logical_id] = name
    resolver.attributes[logical_id] = {"Arn": f"arn:{PARTITION}:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}


def _table(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    ddb = local.client("dynamodb")
    name = _physical_name(logical_id, properties, resolver)
    arguments: dict[str, Any] = {
        "TableName": name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if arguments["BillingMode"] == "PROVISIONED":
        arguments["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if index_kind in properties:
            arguments[index_kind] = properties[index_kind]
    if properties.get("SSESpecification", {}).get("SSEEnabled"):
        arguments["SSESpecification"] = {"Enabled": True}
    description = ddb.create_table(**arguments)["TableDescription"]
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    if properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    resolver.refs[logical_id] = name
    resolver.attributes[logical_id] = {"Arn": description["TableArn"]}


_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
)


def _queue(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    sqs = local.client("sqs")
    name = _physical_name(logical_id, properties, resolver)
    attributes = {
        key: (str(properties[key]).lower() if isinstance(properties[key], bool) else str(properties[key]))
        for key in _QUEUE_ATTRIBUTES
        if key in properties
    }
    redrive = properties.get("RedrivePolicy")
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": redrive["deadLetterTargetArn"], "maxReceiveCount": int(redrive["maxReceiveCount"])}
        )
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = f"arn:{PARTITION}:sqs:{local.region}:{local.account_id}:{name}"
    resolver.refs[logical_id] = url
    resolver.attributes[logical_id] = {"Arn": arn, "QueueName": name, "QueueUrl": url}


def _topic(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    name = _physical_name(logical_id, properties, resolver)
    arn = local.client("sns").create_topic(Name=name)["TopicArn"]
    resolver.refs[logical_id] = arn
    resolver.attributes[logical_id] = {"TopicArn": arn, "TopicName": name}


def _subscription(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "TopicArn": properties["TopicArn"],
        "Protocol": properties["Protocol"],
        "Endpoint": properties["Endpoint"],
        "ReturnSubscriptionArn": True,
    }
    if properties.get("RawMessageDelivery"):
        arguments["Attributes"] = {"RawMessageDelivery": "true"}
    arn = local.client("sns").subscribe(**arguments)["SubscriptionArn"]
    resolver.refs[logical_id] = arn


def _queue_policy(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    for url in properties["Queues"]:
        local.client("sqs").set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": json.dumps(properties["PolicyDocument"])}
        )
    resolver.refs[logical_id] = logical_id


def _role(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    iam = local.client("iam")
    name = _physical_name(logical_id, properties, resolver)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(properties["AssumeRolePolicyDocument"]))[
        "Role"
    ]["Arn"]
    for policy in properties.get("Policies", []):
        iam.put_role_policy(
            RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(policy["PolicyDocument"])
        )
    resolver.refs[logical_id] = name
    resolver.attributes[logical_id] = {"Arn": arn}


def _schedule_group(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    name = _physical_name(logical_id, properties, resolver)
    arn = local.client("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
    resolver.refs[logical_id] = name
    resolver.attributes[logical_id] = {"Arn": arn}


def _schedule(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    name = _physical_name(logical_id, properties, resolver)
    target = {key: properties["Target"][key] for key in ("Arn", "RoleArn", "Input") if key in properties["Target"]}
    arn = local.client("scheduler").create_schedule(
        Name=name,
        GroupName=properties.get("GroupName", "default"),
        ScheduleExpression=properties["ScheduleExpression"],
        FlexibleTimeWindow=properties["FlexibleTimeWindow"],
        Target=target,
        State=properties.get("State", "ENABLED"),
    )["ScheduleArn"]
    resolver.refs[logical_id] = name
    resolver.attributes[logical_id] = {"Arn": arn}


def _ses_configuration_set(local: LocalAws, resolver: _Resolver, logical_id: str, properties: dict[str, Any]) -> None:
    name = _physical_name(logical_id, properties, resolver)
    local.client("sesv2").create_configuration_set(ConfigurationSetName=name)
    resolver.refs[logical_id] = name


_CREATORS: tuple[tuple[str, Callable[[LocalAws, _Resolver, str, dict[str, Any]], None]], ...] = (
    ("AWS::S3::Bucket", _bucket),
    ("AWS::DynamoDB::Table", _table),
    ("AWS::SQS::Queue", _queue),
    ("AWS::SNS::Topic", _topic),
    ("AWS::SNS::Subscription", _subscription),
    ("AWS::SQS::QueuePolicy", _queue_policy),
    ("AWS::IAM::Role", _role),
    ("AWS::Scheduler::ScheduleGroup", _schedule_group),
    ("AWS::Scheduler::Schedule", _schedule),
    ("AWS::SES::ConfigurationSet", _ses_configuration_set),
)

CREATED_TYPES = frozenset(kind for kind, _ in _CREATORS)
"""Resource types stood up in moto; the rest (functions, layers, alarms, dashboard, topic policies,
SES event destinations) have no behaviour moto would exercise."""


def _create_secrets(local: LocalAws) -> None:
    """SecureString parameters the functions read, plus a verified SES identity, like a deploy's set-up."""
    ssm = local.client("ssm")
    for parameter, value in LOCAL_SECRETS.items():
        name = local.parameters.get(parameter)
        if name:
            ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
            local.secrets[name] = value
    identity = local.parameters.get("SesIdentity")
    if identity:
        ses = local.client("ses")
        if "@" in identity:
            ses.verify_email_identity(EmailAddress=identity)
        else:
            ses.verify_domain_identity(Domain=identity)


def _resolve_functions(
    template: Mapping[str, Any], resources: Mapping[str, Any], resolver: _Resolver, local: LocalAws
) -> None:
    function_globals = template.get("Globals", {}).get("Function", {})
    shared = resolver.resolve(function_globals.get("Environment", {}).get("Variables", {}))
    global_layers = resolver.resolve(function_globals.get("Layers", []))
    local.env = {key: str(value) for key, value in shared.items()}
    local.env["AWS_DEFAULT_REGION"] = local.region
    local.env["AWS_REGION"] = local.region
    if local.endpoint_url:
        local.env["AWS_ENDPOINT_URL"] = local.endpoint_url
    for logical_id, definition in resources.items():
        if definition.get("Type") != "AWS::Serverless::Function":
            continue
        properties = definition.get("Properties", {})
        own = resolver.resolve(properties.get("Environment", {}).get("Variables", {}))
        sources = []
        for event in properties.get("Events", {}).values():
            if event.get("Type") != "SQS":
                continue
            event_properties = event["Properties"]
            queue_arn = resolver.resolve(event_properties["Queue"])
            queue_logical_id = next(
                logical
                for logical, attrs in resolver.attributes.items()
                if attrs.get("Arn") == queue_arn and "QueueUrl" in attrs
            )
            sources.append(
                SqsSource(
                    queue=queue_logical_id,
                    queue_url=resolver.refs[queue_logical_id],
                    batch_size=int(event_properties.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in event_properties.get("FunctionResponseTypes", []),
                )
            )
        local.functions[logical_id] = LocalFunction(
            logical_id=logical_id,
            name=resolver.refs[logical_id],
            code_uri=str(properties.get("CodeUri", "")),
            handler=str(properties.get("Handler", "")),
            environment={key: str(value) for key, value in own.items()},
            layers=tuple(global_layers + resolver.resolve(properties.get("Layers", []))),
            sqs_sources=tuple(sources),
        )
