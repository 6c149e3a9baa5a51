"""The demo's stand-ins for AWS machinery, against template.yaml's resources in moto.

Scheduler: schedules are read back from the scheduler API and fire when EventBridge would.
Dispatcher: queues drain like the Lambda event source mapping (partial failures stay, come back
after the simulated visibility timeout, reach the DLQ after maxReceiveCount with their reason).
Requests: botocore hooks count calls per caller, service and operation.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from funnelcast.demo.clock import SimulatedClock
from funnelcast.demo.dispatcher import DelayedSends, QueueDispatcher, QueueSource
from funnelcast.demo.requests import PIPELINE, SIMULATOR, RequestCounter
from funnelcast.demo.scheduler import SimulatedScheduler, parse_definition
from funnelcast.local.aws_env import LocalAws

START = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # Tuesday 2026-12-01 00:00 in Seoul


def _schedule(aws: LocalAws, name: str, expression: str, payload: str, *, delete: bool = False) -> None:
    request: dict[str, Any] = {
        "Name": name,
        "GroupName": aws.settings.schedule_group,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": "Asia/Seoul" if expression.startswith("cron") else "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {"Arn": aws.arns["PlanCampaignFunction"], "RoleArn": aws.arns["SchedulerRole"], "Input": payload},
    }
    if delete:
        request["ActionAfterCompletion"] = "DELETE"
    aws.client("scheduler").create_schedule(**request)


def test_scheduler_fires_cron_in_its_zone_and_deletes_one_time_schedules(aws: LocalAws) -> None:
    """Given a daily 10:00 Seoul cron and a one-time at() schedule, when a day passes in 1-hour windows,
    then each fires once at its instant with the scheduled time in its input, and the at() one is gone."""
    _schedule(
        aws,
        "campaign-x",
        "cron(0 10 * * ? *)",
        '{"campaign_id": "x", "scheduled_time": "<aws.scheduler.scheduled-time>"}',
    )
    _schedule(aws, "waiting-1", "at(2026-12-01T05:30:00)", '{"action": "release_waiting", "key": "k"}', delete=True)
    scheduler = SimulatedScheduler(aws.client("scheduler"), aws.settings.schedule_group)
    fired = []
    for hour in range(24):
        for firing in scheduler.due(START + timedelta(hours=hour), START + timedelta(hours=hour + 1)):
            fired.append((firing.at, firing.definition.name, firing.payload))
            scheduler.completed(firing)
    campaign = [f for f in fired if f[1] == "campaign-x"]
    assert [f[0] for f in campaign] == [datetime(2026, 12, 1, 1, 0, tzinfo=UTC)]  # 10:00 KST
    assert campaign[0][2] == {"campaign_id": "x", "scheduled_time": "2026-12-01T01:00:00Z"}
    assert [(f[0], f[1]) for f in fired if f[1] == "waiting-1"] == [
        (datetime(2026, 12, 1, 5, 30, tzinfo=UTC), "waiting-1")
    ]
    names = [
        s["Name"] for s in aws.client("scheduler").list_schedules(GroupName=aws.settings.schedule_group)["Schedules"]
    ]
    assert "waiting-1" not in names
    assert "campaign-x" in names


def test_parse_definition_reads_rate_and_rejects_unknown_expressions() -> None:
    definition = parse_definition(
        {"Name": "r", "ScheduleExpression": "rate(6 hours)", "Target": {"Arn": "a", "Input": "{}"}}
    )
    assert definition.schedule.rate == "6 hours"
    assert definition.timezone == "UTC"
    from funnelcast.errors import SchedulerError

    with pytest.raises(SchedulerError, match="cannot read ScheduleExpression"):
        parse_definition({"Name": "bad", "ScheduleExpression": "every day"})


def _dispatcher(aws: LocalAws, clock: SimulatedClock, handler: Any, **options: Any) -> QueueDispatcher:
    dispatcher = QueueDispatcher(aws.client("sqs"), clock, region=aws.region, **options)
    dispatcher.add(
        QueueSource(
            function="SendSmsFunction",
            queue="SmsQueue",
            queue_url=aws.names["SmsQueue"],
            queue_arn=aws.arns["SmsQueue"],
            batch_size=10,
            visibility_timeout=180,
            report_batch_item_failures=True,
            handler=handler,
        )
    )
    return dispatcher


def test_failed_records_come_back_after_the_visibility_timeout_then_dead_letter(aws: LocalAws) -> None:
    """Given a handler that fails the 'bad' body every time, when the queue is drained while the
    simulated clock passes the visibility timeout again and again, then the good body is handled once
    and deleted, and the bad one is retried until moto's redrive moves it to SmsDLQ with its error."""
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=aws.names["SmsQueue"], MessageBody="good")
    sqs.send_message(QueueUrl=aws.names["SmsQueue"], MessageBody="bad")
    clock = SimulatedClock(START)
    seen: list[str] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            seen.append(record["body"])
            if record["body"] == "bad":
                failures.append({"itemIdentifier": record["messageId"]})
                dispatcher.note_error(record["messageId"], "bad body")
        return {"batchItemFailures": failures}

    dispatcher = _dispatcher(aws, clock, handler)
    dispatcher.drain()
    assert seen == ["good", "bad"]
    assert dispatcher.in_flight() == 1
    dispatcher.drain()
    assert seen.count("bad") == 1  # still invisible: the simulated timeout has not passed
    for _ in range(6):
        clock.advance(timedelta(seconds=181))
        dispatcher.drain()
    assert seen.count("good") == 1
    assert seen.count("bad") == 5  # maxReceiveCount of the template
    letters = dispatcher.dead_letters({"SmsDLQ": aws.names["SmsDLQ"]})
    assert [(letter["body"], letter["reason"]) for letter in letters] == [("bad", "bad body")]


def test_duplicate_delivery_puts_a_handled_body_back(aws: LocalAws) -> None:
    aws.client("sqs").send_message(QueueUrl=aws.names["SmsQueue"], MessageBody="once")
    bodies: list[str] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        bodies.extend(record["body"] for record in event["Records"])
        return {"batchItemFailures": []}

    dispatcher = _dispatcher(aws, SimulatedClock(START), handler, duplicate_rate=1.0)
    dispatcher.drain()
    assert bodies == ["once", "once"]
    assert dispatcher.stats.duplicates_injected == 1


def test_requests_are_counted_per_caller_service_and_operation(aws: LocalAws) -> None:
    """Given the counter active, when the pipeline and the simulator each make calls, then both are
    counted under their caller, per service and operation, and per 1,000 delivered messages."""
    sqs = aws.client("sqs")
    with RequestCounter() as counter:
        RequestCounter.watch(sqs)
        sqs.send_message(QueueUrl=aws.names["SmsQueue"], MessageBody="x")
        with RequestCounter.simulating():
            sqs.receive_message(QueueUrl=aws.names["SmsQueue"])
            sqs.receive_message(QueueUrl=aws.names["SmsQueue"])
    assert counter.by_service(PIPELINE) == {"sqs": {"SendMessage": 1}}
    assert counter.by_service(SIMULATOR) == {"sqs": {"ReceiveMessage": 2}}
    report = counter.report(delivered=4)
    assert report["pipeline"]["per_1000_delivered"] == 250.0
    assert json.loads(json.dumps(report)) == report
    sqs.send_message(QueueUrl=aws.names["SmsQueue"], MessageBody="after")  # not counted any more
    assert counter.total() == 3


def test_delayed_sends_wait_for_simulated_time() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.sent: list[tuple[str, str]] = []

        def send(self, channel: str, body: str, *, delay_seconds: int = 0) -> None:
            assert delay_seconds == 0
            self.sent.append((channel, body))

    inner, clock = Recorder(), SimulatedClock(START)
    delayed = DelayedSends(inner, clock)
    delayed.send("sms", "now")
    delayed.send("sms", "later", delay_seconds=600)
    assert inner.sent == [("sms", "now")]
    assert delayed.next_due() == START + timedelta(minutes=10)
    clock.advance(timedelta(minutes=9))
    assert delayed.release_due() == 0
    clock.advance(timedelta(minutes=1))
    assert delayed.release_due() == 1
    assert inner.sent[-1] == ("sms", "later")


def test_the_clock_never_goes_back() -> None:
    clock = SimulatedClock(START)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(START - timedelta(seconds=1))
    with pytest.raises(ValueError, match="aware"):
        SimulatedClock(datetime(2026, 12, 1))
