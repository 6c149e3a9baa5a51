"""template.yaml as CloudFormation sees it: package, transform offline, create the stack in moto.

This is how the deploy-fidelity test proves that the names and variables the template wires are
right: ``sam deploy`` = package code to S3 + the ``AWS::Serverless-2016-10-31`` transform +
CloudFormation. Here the transform is aws-sam-translator (offline, the library SAM itself uses) and
CloudFormation is moto's, so every ``!Ref``/``!GetAtt``/``!Sub`` in a function's environment is
resolved by a CloudFormation implementation, not by our own resolver.

moto's CloudFormation ignores TTL, scheduler resources and layer attachment; read those from the
translated template (``translate``) instead. Left out of the moto stack: resource types moto's
CloudFormation does not implement (scheduler, SES configuration sets, alarms, function URLs, SNS
subscriptions and policies: ``Stack.skipped`` lists them; a ``!Ref`` to one is replaced by its name
property, as CloudFormation would resolve it) and event source mappings (``MOTO_SKIPPED_TYPES``:
moto would try to run the functions in Docker when a message arrives).
"""

from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funnelcast.local.aws_env import TemplateError, boto_client, load_template

ARTIFACT_BUCKET = "funnelcast-sam-artifacts"
"""Where ``package`` puts code, like ``sam deploy --resolve-s3`` does."""

MOTO_SKIPPED_TYPES = frozenset({"AWS::Lambda::EventSourceMapping"})
"""Translated resources not created in moto: they would make moto invoke Lambda code (Docker)."""

_CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


@dataclass(frozen=True)
class Stack:
    """A stack created in moto CloudFormation from template.yaml."""

    name: str
    outputs: dict[str, str]
    physical_ids: dict[str, str]
    """logical id -> physical resource id, for every resource moto created."""
    translated: dict[str, Any]
    """The CloudFormation template the transform produced (before moto-only omissions)."""
    skipped: dict[str, str]
    """logical id -> type of the translated resources not created in moto."""


def code_locations(template: Mapping[str, Any]) -> dict[str, str]:
    """logical id -> local code directory of every function and layer (``CodeUri``/``ContentUri``)."""
    found: dict[str, str] = {}
    for logical_id, definition in template["Resources"].items():
        key = _CODE_PROPERTIES.get(definition.get("Type", ""))
        if key is not None:
            value = definition.get("Properties", {}).get(key)
            if not isinstance(value, str):
                raise TemplateError(f"template.yaml: {logical_id}.{key} must be a local directory")
            found[logical_id] = value
    return found


def package(template: Mapping[str, Any], bucket: str, keys: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``template`` whose code locations point at ``s3://bucket/<keys[logical id]>``."""
    packaged = copy.deepcopy(dict(template))
    for logical_id, key in keys.items():
        definition = packaged["Resources"][logical_id]
        definition["Properties"][_CODE_PROPERTIES[definition["Type"]]] = f"s3://{bucket}/{key}"
    return packaged


def translate(template: Mapping[str, Any], region: str, parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation template of a packaged SAM template, transformed offline by aws-sam-translator."""
    import boto3  # noqa: PLC0415
    from samtranslator.parser.parser import Parser  # noqa: PLC0415  (dev-only dependency)
    from samtranslator.translator.translator import Translator  # noqa: PLC0415

    session = boto3.session.Session(region_name=region)
    translator = Translator(None, Parser(), boto_session=session)
    document = copy.deepcopy(dict(template))
    result: dict[str, Any] = translator.translate(
        document,
        parameter_values=dict(parameters or {}),
        # Managed policies by name would be looked up in IAM; SAM knows the ARNs of the ones it uses.
        get_managed_policy_map=dict,
    )
    return result


def zip_directory(path: Path) -> bytes:
    """A deterministic zip of ``path`` (no caches), as ``sam package`` would upload it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in {"__pycache__", ".mypy_cache"} and not d.endswith(".egg-info"))
            for name in sorted(names):
                file = Path(root, name)
                info = zipfile.ZipInfo(str(file.relative_to(path)), date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                archive.writestr(info, file.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def deploy_to_moto(
    template_path: str | Path,
    *,
    stack_name: str,
    region: str,
    parameters: Mapping[str, str] | None = None,
    endpoint_url: str | None = None,
) -> Stack:
    """Package, transform and create template.yaml as a stack in moto (inside ``mock_aws`` or a server).

    Raises
    ------
    TemplateError
        When the transform rejects the template or moto's CloudFormation fails to create the stack;
        the message carries the failing resources' status reasons.
    """
    root = Path(template_path).resolve().parent
    template = load_template(template_path)
    s3 = boto_client("s3", region, endpoint_url)
    s3.create_bucket(Bucket=ARTIFACT_BUCKET, CreateBucketConfiguration={"LocationConstraint": region})
    keys: dict[str, str] = {}
    for logical_id, directory in code_locations(template).items():
        source = root / directory
        if not source.is_dir():
            raise TemplateError(f"template.yaml: {logical_id} code directory {directory} does not exist")
        keys[logical_id] = f"{logical_id}.zip"
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=keys[logical_id], Body=zip_directory(source))
    try:
        translated = translate(package(template, ARTIFACT_BUCKET, keys), region, parameters)
    except Exception as exc:  # the translator raises its own exception types with every problem listed
        raise TemplateError(f"template.yaml: the SAM transform failed: {exc}") from exc
    deployable, skipped = moto_deployable(translated)
    cloudformation = boto_client("cloudformation", region, endpoint_url)
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(deployable),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in (parameters or {}).items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    description = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if description["StackStatus"] != "CREATE_COMPLETE":
        events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
        reasons = [
            f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason', '')}"
            for event in events
            if event["ResourceStatus"].endswith("FAILED")
        ]
        raise TemplateError(f"stack {stack_name} is {description['StackStatus']}: {'; '.join(reasons)}")
    outputs = {output["OutputKey"]: output["OutputValue"] for output in description.get("Outputs", [])}
    resources = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    physical_ids = {item["LogicalResourceId"]: item.get("PhysicalResourceId", "") for item in resources}
    return Stack(name=stack_name, outputs=outputs, physical_ids=physical_ids, translated=translated, skipped=skipped)


def _moto_creates(resource_type: str) -> bool:
    from moto.cloudformation import parsing  # noqa: PLC0415  (dev-only dependency)

    if resource_type in MOTO_SKIPPED_TYPES or resource_type in parsing.NULL_MODELS:
        return False
    return resource_type.startswith("Custom::") or resource_type in parsing.get_model_map()


_NAME_KEYS = ("Name", "ConfigurationSetName", "TopicName", "QueueName")


def moto_deployable(translated: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``translated`` without what moto cannot create, references to it replaced by its name.

    A ``!Ref`` to a skipped resource becomes its name property (``Name``...), in plain values and
    inside ``!Sub`` strings; outputs about skipped resources are dropped. Any other use of a skipped
    resource (a ``!GetAtt`` in a kept resource) raises ``TemplateError``: the test could not be faithful.
    """
    resources: dict[str, Any] = translated["Resources"]
    skipped = {
        logical_id: definition["Type"]
        for logical_id, definition in resources.items()
        if not _moto_creates(definition["Type"])
    }
    names: dict[str, Any] = {}
    for logical_id in skipped:
        properties = resources[logical_id].get("Properties", {})
        for key in _NAME_KEYS:
            if key in properties:
                names[logical_id] = properties[key]
                break

    def replace(value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [replace(item, where) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"} and value["Ref"] in skipped:
            if value["Ref"] not in names:
                raise TemplateError(f"{where} refers to {value['Ref']}, which moto cannot create and has no name")
            return copy.deepcopy(names[value["Ref"]])
        if set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"][0] if isinstance(value["Fn::GetAtt"], list) else value["Fn::GetAtt"]
            if str(target).split(".")[0] in skipped:
                raise TemplateError(f"{where} uses !GetAtt {target}, which moto cannot create")
        if set(value) == {"Fn::Sub"}:
            return {"Fn::Sub": _inline_sub(value["Fn::Sub"], names, where)}
        return {key: replace(item, where) for key, item in value.items()}

    def _mentions_skipped(value: Any) -> bool:
        text = json.dumps(value)
        return any(f'"{logical_id}"' in text or f"${{{logical_id}" in text for logical_id in skipped)

    deployable = {key: value for key, value in translated.items() if key not in {"Resources", "Outputs"}}
    deployable["Resources"] = {
        logical_id: replace(definition, logical_id)
        for logical_id, definition in resources.items()
        if logical_id not in skipped
    }
    deployable["Outputs"] = {
        key: replace(output, f"Outputs.{key}")
        for key, output in translated.get("Outputs", {}).items()
        if not _mentions_skipped(output["Value"])
    }
    return deployable, skipped


def _inline_sub(argument: Any, names: Mapping[str, Any], where: str) -> Any:
    """Put skipped resources' names into a ``!Sub`` text (``${ScheduleGroup}`` -> its ``Name`` text)."""
    text, variables = (argument, None) if isinstance(argument, str) else (argument[0], argument[1])
    for logical_id, name in names.items():
        marker = f"${{{logical_id}}}"
        if marker not in text:
            continue
        if isinstance(name, str):
            text = text.replace(marker, name)
        elif isinstance(name, dict) and isinstance(name.get("Fn::Sub"), str):
            text = text.replace(marker, name["Fn::Sub"])
        else:
            raise TemplateError(f"{where}: cannot inline the name of {logical_id} into a !Sub")
    return text if variables is None else [text, variables]
