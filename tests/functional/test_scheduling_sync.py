"""Campaign schedules and one-time waiting schedules against moto's EventBridge Scheduler."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from funnelcast.errors import ConfigurationError, SchedulerError
from funnelcast.local.aws_env import LocalAws
from funnelcast.rules.models import Campaign, RuleSet, Schedule
from funnelcast.rules.ruleset import load_ruleset, rule_paths
from funnelcast.scheduling import (
    campaign_schedule_name,
    create_one_time_schedule,
    due_between,
    one_time_schedule_name,
    schedule_sync_callback,
    sync_schedules,
)
from funnelcast.storage import S3Store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "segment_rules"
# Scheduler (and moto) refuse start dates in the past, so the test clock sits just before "real" now.
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def examples() -> RuleSet:
    return load_ruleset(
        rule_paths([str(EXAMPLES / "segments"), str(EXAMPLES / "campaigns"), str(EXAMPLES / "policy.yaml")])
    ).ruleset


def with_schedule(ruleset: RuleSet, campaign_id: str, **schedule: Any) -> RuleSet:
    campaigns = [
        c.model_copy(update={"schedule": Schedule.model_validate(schedule)}) if c.id == campaign_id else c
        for c in ruleset.campaigns
    ]
    return ruleset.model_copy(update={"campaigns": campaigns})


def without(ruleset: RuleSet, campaign_id: str) -> RuleSet:
    return ruleset.model_copy(update={"campaigns": [c for c in ruleset.campaigns if c.id != campaign_id]})


def schedules(aws: LocalAws) -> dict[str, dict[str, Any]]:
    client = aws.client("scheduler")
    group = aws.names["ScheduleGroup"]
    names = [s["Name"] for s in client.list_schedules(GroupName=group)["Schedules"]]
    return {name: client.get_schedule(Name=name, GroupName=group) for name in names}


def sync(aws: LocalAws, ruleset: RuleSet, now: datetime = NOW) -> Any:
    settings = aws.settings
    return sync_schedules(
        ruleset,
        aws.client("scheduler"),
        settings.schedule_group,
        settings.planner_function_arn,
        settings.scheduler_role_arn,
        now=now,
    )


def test_one_schedule_per_campaign_targets_the_planner(aws: LocalAws, examples: RuleSet) -> None:
    # Given the example rule set and the stack's schedule group (which already holds the report schedule)
    before = set(schedules(aws))
    # When the schedules are synced
    result = sync(aws, examples)
    # Then each campaign has exactly one schedule, campaign-<id>, and nothing else changed
    names = {campaign_schedule_name(c.id) for c in examples.campaigns}
    assert sorted(result.created) == sorted(names)
    found = schedules(aws)
    assert set(found) == before | names
    campaign: Campaign = next(c for c in examples.campaigns if c.schedule.cron is not None)
    cart = found[campaign_schedule_name(campaign.id)]
    assert cart["ScheduleExpression"] == f"cron({campaign.schedule.cron})"
    assert cart["ScheduleExpressionTimezone"] == "Asia/Seoul"
    assert cart["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert cart["Target"]["Arn"] == aws.settings.planner_function_arn
    assert cart["Target"]["RoleArn"] == aws.settings.scheduler_role_arn
    assert json.loads(cart["Target"]["Input"]) == {
        "campaign_id": campaign.id,
        "scheduled_time": "<aws.scheduler.scheduled-time>",
    }
    hourly = next(c for c in examples.campaigns if c.schedule.rate is not None)
    rate = found[campaign_schedule_name(hourly.id)]
    assert rate["ScheduleExpression"] == f"rate({hourly.schedule.rate})"
    # and a rate schedule starts at its next fire on the simulated clock's grid, not "at creation"
    (first,) = due_between(hourly.schedule, "UTC", NOW + timedelta(seconds=1), NOW + timedelta(hours=1, seconds=1))
    assert rate["StartDate"] == first


def test_resync_updates_changed_and_deletes_removed_campaigns_only(aws: LocalAws, examples: RuleSet) -> None:
    # Given synced schedules and a waiting batch's one-time schedule in the same group
    sync(aws, examples)
    waiting = one_time_schedule_name("waiting-", "waiting/cart_recovery@20261201T0100Z/20261201T2300Z.json")
    settings = aws.settings
    create_one_time_schedule(
        aws.client("scheduler"),
        settings.schedule_group,
        waiting,
        NOW + timedelta(hours=3),
        settings.planner_function_arn,
        settings.scheduler_role_arn,
        {"action": "release_waiting", "key": "k"},
    )
    # When nothing changed (even an hour and a half later), Then nothing is written
    again = sync(aws, examples, now=NOW + timedelta(minutes=90))
    assert (again.created, again.updated, again.deleted) == ([], [], [])
    assert len(again.unchanged) == len(examples.campaigns)
    # When one campaign's cron changes and another campaign file is deleted
    changed = without(
        with_schedule(examples, "cart_recovery", cron="0 11 * * ? *", timezone="Asia/Seoul"), "welcome_coupon"
    )
    result = sync(aws, changed)
    # Then exactly those two schedules change; the waiting schedule and the template's own remain
    assert (result.created, result.updated, result.deleted) == (
        [],
        ["campaign-cart_recovery"],
        ["campaign-welcome_coupon"],
    )
    found = schedules(aws)
    assert found["campaign-cart_recovery"]["ScheduleExpression"] == "cron(0 11 * * ? *)"
    assert "campaign-welcome_coupon" not in found
    assert waiting in found


def test_dates_in_the_past_and_future(aws: LocalAws, examples: RuleSet) -> None:
    tomorrow = (NOW + timedelta(days=2)).date()
    ruleset = with_schedule(
        examples, "cart_recovery", cron="0 10 * * ? *", timezone="Asia/Seoul", start=date(2020, 1, 1), end=tomorrow
    )
    ruleset = with_schedule(ruleset, "welcome_coupon", cron="0 10 * * ? *", timezone="Asia/Seoul", start=tomorrow)
    ruleset = with_schedule(ruleset, "dormant_winback", at=datetime(2020, 1, 1, 9, 0), timezone="Asia/Seoul")
    # When synced
    result = sync(aws, ruleset)
    found = schedules(aws)
    # Then a past start is left out, the end date becomes the next local midnight, a future start stays
    cart = found["campaign-cart_recovery"]
    assert "StartDate" not in cart or cart["StartDate"] is None
    end = datetime.combine(tomorrow + timedelta(days=1), datetime.min.time()).replace(tzinfo=UTC) - timedelta(hours=9)
    assert cart["EndDate"] == end
    assert found["campaign-welcome_coupon"]["StartDate"] == end - timedelta(days=1)
    # and a one-time campaign already in the past gets no schedule at all
    assert result.expired == ["campaign-dormant_winback"]
    assert "campaign-dormant_winback" not in found


def test_one_time_schedule_for_a_waiting_batch(aws: LocalAws) -> None:
    settings = aws.settings
    client = aws.client("scheduler")
    name = one_time_schedule_name("waiting-", "waiting/x/20261201T2300Z.json")
    at = datetime(2030, 12, 1, 23, 0, 30, tzinfo=UTC)
    payload = {"action": "release_waiting", "key": "waiting/x/20261201T2300Z.json"}
    # When the planner asks for a release at 23:00:30 UTC
    args = (
        client,
        settings.schedule_group,
        name,
        at,
        settings.planner_function_arn,
        settings.scheduler_role_arn,
        payload,
    )
    assert create_one_time_schedule(*args) is True
    # Then the schedule fires at the next whole minute (never early), once, and deletes itself
    found = client.get_schedule(Name=name, GroupName=settings.schedule_group)
    assert found["ScheduleExpression"] == "at(2030-12-01T23:01:00)"
    assert found["ScheduleExpressionTimezone"] == "UTC"
    assert found["ActionAfterCompletion"] == "DELETE"
    assert json.loads(found["Target"]["Input"]) == payload
    # and a re-invoked planner asking again is told it exists (no error, no duplicate)
    assert create_one_time_schedule(*args) is False
    assert len(name) <= 64
    with pytest.raises(SchedulerError, match="timezone-aware"):
        create_one_time_schedule(client, "g", name, datetime(2030, 1, 1), "a", "r", {})
    with pytest.raises(SchedulerError, match="one_time_schedule_name"):
        create_one_time_schedule(client, "g", "waiting/with/slashes", at, "a", "r", {})


def test_long_campaign_ids_fit_the_name_limit() -> None:
    long_id = "a" + "b" * 62
    name = campaign_schedule_name(long_id)
    assert len(name) == 64
    assert name.startswith("campaign-ab")
    assert name != campaign_schedule_name(long_id[:-1] + "c")
    assert campaign_schedule_name("cart_recovery") == "campaign-cart_recovery"


def test_scheduler_errors_become_scheduler_errors(aws: LocalAws, examples: RuleSet) -> None:
    client = aws.client("scheduler")
    with Stubber(client) as stub:
        stub.add_client_error("list_schedules", "AccessDeniedException", "not allowed")
        with pytest.raises(SchedulerError, match=r"list_schedules.*AccessDeniedException"):
            sync_schedules(examples, client, "g", "arn:target", "arn:role")
    with pytest.raises(ConfigurationError, match="PLANNER_FUNCTION_ARN"):
        sync_schedules(examples, client, "g", "", "arn:role")


def test_activation_handler_syncs_schedules(aws: LocalAws) -> None:
    # Given the example rules uploaded under incoming/ in the template's rules bucket
    store = S3Store(aws.names["RulesBucket"], "", aws.client("s3"))
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        if "fixtures" not in path.parts:
            store.put_bytes(f"incoming/{path.relative_to(EXAMPLES)}", path.read_bytes())
    sys.path.insert(0, str(ROOT / "functions" / "activate_rules"))
    try:
        handler = importlib.import_module("activate_rules")
    finally:
        sys.path.pop(0)

    class Context:
        function_name = "ActivateRulesFunction"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:ActivateRulesFunction"
        aws_request_id = "req-1"

    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": aws.names["RulesBucket"]}, "object": {"key": "incoming/policy.yaml"}},
            }
        ]
    }
    # When S3 notifies the activation function
    (outcome,) = handler.lambda_handler(event, Context())["results"]
    # Then the set is active and every campaign has its schedule
    assert outcome["activated"] is True
    names = {n for n in schedules(aws) if n.startswith("campaign-")}
    assert names == {campaign_schedule_name(c) for c in outcome["campaigns"]}


def test_callback_reads_settings(aws: LocalAws, examples: RuleSet) -> None:
    callback = schedule_sync_callback(aws.settings, scheduler_client=aws.client("scheduler"), clock=lambda: NOW)
    assert len(callback(examples).created) == len(examples.campaigns)
    with pytest.raises(ConfigurationError):
        schedule_sync_callback(aws.settings.model_copy(update={"planner_function_arn": ""}))
