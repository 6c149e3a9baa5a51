"""The local CloudFormation resolver behind the ``aws`` fixture: tags, intrinsics, conditions, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnelcast.local.aws_env import CfnLoader, TemplateError, _Resolver, load_template

PSEUDO = {"AWS::StackName": "fc", "AWS::AccountId": "123456789012", "AWS::Region": "ap-northeast-2"}


def resolver(**parameters: str) -> _Resolver:
    template = {
        "Resources": {},
        "Conditions": {"HasEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}},
    }
    built = _Resolver(template, {"AlarmEmail": "", **parameters}, PSEUDO)
    built.refs["Queue"] = "https://sqs/queue"
    built.attributes["Queue"] = {"Arn": "arn:aws:sqs:ap-northeast-2:123456789012:queue", "QueueName": "queue"}
    return built


def test_short_tags_load_as_long_form() -> None:
    import yaml

    text = "a: !Ref X\nb: !GetAtt Q.Arn\nc: !Sub 'x-${AWS::Region}'\nd: !If [C, 1, 2]\ne: !Join ['-', [a, b]]\n"
    document = yaml.load(text, Loader=CfnLoader)
    assert document == {
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["Q", "Arn"]},
        "c": {"Fn::Sub": "x-${AWS::Region}"},
        "d": {"Fn::If": ["C", 1, 2]},
        "e": {"Fn::Join": ["-", ["a", "b"]]},
    }


def test_sub_resolves_pseudo_parameters_attributes_variables_and_escapes() -> None:
    value = {"Fn::Sub": ["${AWS::StackName}-${Queue.QueueName}-${Name}-${!Literal}", {"Name": {"Ref": "Queue"}}]}
    assert resolver().resolve(value) == "fc-queue-https://sqs/queue-${Literal}"


def test_conditions_pick_the_branch_and_novalue_disappears() -> None:
    document = {"Endpoint": {"Fn::If": ["HasEmail", {"Ref": "AlarmEmail"}, {"Ref": "AWS::NoValue"}]}, "Keep": 1}
    assert resolver().resolve(document) == {"Keep": 1}
    assert resolver(AlarmEmail="ops@example.com").resolve(document) == {"Endpoint": "ops@example.com", "Keep": 1}


def test_unknown_references_are_errors_naming_them() -> None:
    with pytest.raises(TemplateError, match="!Ref Missing"):
        resolver().resolve({"Ref": "Missing"})
    with pytest.raises(TemplateError, match=r"!GetAtt Queue\.Nope"):
        resolver().resolve({"Fn::GetAtt": ["Queue", "Nope"]})
    with pytest.raises(TemplateError, match="Fn::Cidr"):
        resolver().resolve({"Fn::Cidr": ["10.0.0.0/16", 2, 8]})


def test_a_file_that_is_not_a_template_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("just: text\n")
    with pytest.raises(TemplateError, match="no Resources mapping"):
        load_template(path)
    with pytest.raises(TemplateError, match="cannot read"):
        load_template(tmp_path / "absent.yaml")
