"""The worker with in-memory parts: fallback, at-most-once, caps, windows, bad input, PII-free logs."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from funnelcast.jobs import Contact, Recipient, SendJob
from funnelcast.rules.models import Purpose, RuleSet
from funnelcast.sending.batch import handle_batch
from funnelcast.sending.fakes import FakeProvider, SimulatedCrashError, fake_providers
from funnelcast.sending.state import FinalState, MemorySendStates
from funnelcast.sending.worker import BadJobError, JobInterruptedError, SenderDependencies, parse_job, process_job
from funnelcast.storage import LocalStore

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 12:00 in Seoul: inside every window
REPO = Path(__file__).resolve().parents[3]

RULESET = RuleSet.model_validate(
    {
        "policy": {"kind": "policy", "compliance": {"ad_label": "(광고)", "opt_out_text": "수신거부 080-000-0000"}},
        "campaigns": [
            {
                "kind": "campaign",
                "id": "cart",
                "name": "Cart",
                "funnel_stage": "revenue",
                "audience": {"attribute": "x", "op": "exists"},
                "schedule": {"cron": "0 10 * * ? *"},
                "purpose": "advertising",
                "topic": "promo",
                "send_window": {"start": "09:00", "end": "20:00"},
                "channels": ["kakao_brand", "sms"],
                "link": "https://shop.example/cart",
                "variants": [
                    {
                        "id": "a",
                        "weight": 1,
                        "messages": {
                            "kakao_brand": {"template": "{{ name }}님, 장바구니가 기다려요"},
                            "sms": {"template": "{{ name }}님 {{ link }}"},
                        },
                    }
                ],
            }
        ],
    }
)


@dataclass
class FakeCaps:
    """Same interface as CapStore: one place per send id, moved between channels, released on failure."""

    refuse: dict[int | str, str] = field(default_factory=dict)
    reserved: dict[str, str] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)

    def reserve(self, reservation: Any, *, policy: Any = None) -> Any:
        @dataclass
        class Result:
            status: str
            cap: str | None = None

        if reservation.user_id in self.refuse:
            return Result("refused", self.refuse[reservation.user_id])
        previous = self.reserved.get(reservation.send_id)
        self.reserved[reservation.send_id] = reservation.channel
        return Result("already_reserved" if previous == reservation.channel else "reserved")

    def release(self, reservation: Any) -> None:
        self.reserved.pop(reservation.send_id, None)
        self.released.append(reservation.send_id)


@dataclass
class FakeRuleSets:
    active_set: RuleSet | None = RULESET

    def bundle(self, rules_hash: str) -> RuleSet:
        return RULESET

    def active(self) -> RuleSet | None:
        return self.active_set


@dataclass
class FakeQueues:
    sent: list[tuple[str, SendJob, int]] = field(default_factory=list)

    def send(self, channel: str, body: str, *, delay_seconds: int = 0) -> None:
        self.sent.append((channel, SendJob.model_validate_json(body), delay_seconds))


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def recipient(user: int, **changes: Any) -> Recipient:
    values: dict[str, Any] = {
        "send_id": f"s{user:04d}",
        "user_id": user,
        "variant_id": "a",
        "waterfall": ["kakao_brand", "sms"],
        "timezone": "Asia/Seoul",
        "contact": Contact(phone=f"+8210555{user:05d}", kakao_friend=user % 2 == 0),
        "variables": {"name": f"홍길동{user}"},
    }
    values.update(changes)
    return Recipient.model_validate(values)


def job(recipients: list[Recipient], channel: str = "kakao_brand", **changes: Any) -> SendJob:
    values: dict[str, Any] = {
        "job_id": "j1",
        "run_id": "cart@20261201T0300Z",
        "campaign_id": "cart",
        "rules_hash": RULESET.rules_hash,
        "channel": channel,
        "purpose": "advertising",
        "topic": "promo",
        "scheduled_at": NOW,
        "recipients": recipients,
    }
    values.update(changes)
    return SendJob.model_validate(values)


@pytest.fixture
def providers() -> dict[str, FakeProvider]:
    return fake_providers()


@pytest.fixture
def deps(tmp_path: Path, providers: dict[str, FakeProvider]) -> SenderDependencies:
    return SenderDependencies(
        rulesets=FakeRuleSets(),
        caps=FakeCaps(),
        states=MemorySendStates(),
        queues=FakeQueues(),
        deliveries=LocalStore(tmp_path / "data"),
        providers=providers,
        clock=Clock(),
    )


def run_fallbacks(deps: SenderDependencies) -> list[Any]:
    """Deliver every queued follow-up job once, as SQS would; returns all records."""
    queues: FakeQueues = deps.queues  # type: ignore[assignment]
    records = []
    while queues.sent:
        _, follow, _ = queues.sent.pop(0)
        records.extend(process_job(follow, deps).records)
    return records


def test_kakao_refusal_falls_back_to_sms_under_the_same_reservation(
    deps: SenderDependencies, providers: dict[str, FakeProvider]
) -> None:
    # Given user 1 (not a Kakao friend) and user 2 (a friend) on a kakao_brand job
    outcome = process_job(job([recipient(1), recipient(2)]), deps)
    # Then 2 got Kakao, 1 is handed to SMS with fallback_from
    assert [r.user_id for r in outcome.records] == [2]
    queues: FakeQueues = deps.queues  # type: ignore[assignment]
    channel, follow, _ = queues.sent[0]
    assert (channel, follow.fallback_from, [r.user_id for r in follow.recipients]) == ("sms", "kakao_brand", [1])
    # When the SMS job runs, Then user 1 gets one SMS with label and opt-out, recorded with fallback_from
    records = run_fallbacks(deps)
    assert [(r.user_id, r.channel, r.status, r.fallback_from) for r in records] == [(1, "sms", "sent", "kakao_brand")]
    assert providers["sms"].outbox[0].body.startswith("(광고) 홍길동1님 https://shop.example/cart")
    assert providers["sms"].outbox[0].body.endswith("수신거부 080-000-0000")
    caps: FakeCaps = deps.caps  # type: ignore[assignment]
    assert caps.reserved == {"s0001": "sms", "s0002": "kakao_brand"}
    assert caps.released == []


def test_a_jobs_states_are_recorded_in_one_call_before_its_fallback_is_enqueued(deps: SenderDependencies) -> None:
    # Given a state table that notes each write and what the queues held at that moment
    queues: FakeQueues = deps.queues  # type: ignore[assignment]
    writes: list[tuple[list[FinalState], int]] = []
    memory = MemorySendStates()

    class NotingStates:
        def claim(self, *args: Any) -> Any:
            return memory.claim(*args)

        def finish_all(self, finals: Any, now: datetime) -> None:
            writes.append((list(finals), len(queues.sent)))
            memory.finish_all(finals, now)

    deps.states = NotingStates()
    # When a kakao_brand job sends to user 2 and hands user 1 (no Kakao friend) to SMS
    process_job(job([recipient(1), recipient(2)]), deps)
    # Then one write holds both outcomes, and it happened before the SMS job was enqueued
    assert writes == [
        ([FinalState("s0001", "handed_off", "sms"), FinalState("s0002", "done", "kakao_brand")], 0),
    ]
    assert [channel for channel, _, _ in queues.sent] == ["sms"]


def test_no_channel_left_releases_the_reservation(deps: SenderDependencies) -> None:
    # Given a user with no phone on the last channel of the waterfall
    lone = recipient(3, waterfall=["sms"], contact=Contact())
    records = process_job(job([lone], channel="sms"), deps).records
    assert [(r.status, r.reason) for r in records] == [("failed", "no_channel")]
    assert deps.caps.released == ["s0003"]  # type: ignore[attr-defined]


def test_crash_after_provider_accept_never_duplicates(
    deps: SenderDependencies, providers: dict[str, FakeProvider]
) -> None:
    # Given a worker that dies after the provider accepted user 2's message
    def crash(entry: Any) -> None:
        raise SimulatedCrashError(entry.send_id)

    providers["kakao_brand"].after_accept = crash
    the_job = job([recipient(2)])
    with pytest.raises(JobInterruptedError, match="SimulatedCrashError"):
        process_job(the_job, deps)
    providers["kakao_brand"].after_accept = None
    # When SQS redelivers before the lease expires, Then nothing is sent and the record retries
    again = process_job(the_job, deps)
    assert again.retry
    assert again.records == []
    # When it is redelivered after the lease, Then it is recorded unknown and still not resent
    deps.clock.now = NOW + deps.lease + timedelta(seconds=1)  # type: ignore[attr-defined]
    late = process_job(the_job, deps)
    assert [(r.status, r.reason) for r in late.records] == [("unknown", "unknown:worker_lost")]
    assert not late.retry
    # And one more redelivery is silently skipped
    assert process_job(the_job, deps).records == []
    assert providers["kakao_brand"].send_ids() == ["s0002"]


def test_one_recipient_crash_keeps_the_other_rows(deps: SenderDependencies, providers: dict[str, FakeProvider]) -> None:
    # Given a batch where the worker dies on user 2 but user 4 was sent
    def crash_on_user_2(entry: Any) -> None:
        if entry.user_id == 2:
            raise SimulatedCrashError(entry.send_id)

    providers["kakao_brand"].after_accept = crash_on_user_2
    response = handle_batch(sqs_event(job([recipient(2), recipient(4)]).model_dump_json()), None, deps, "kakao_brand")
    # Then the record is redelivered and user 4's row is written anyway
    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    (key,) = deps.deliveries.list_keys("deliveries/")
    assert [json.loads(line)["user_id"] for line in deps.deliveries.get_bytes(key).splitlines()] == [4]


def test_redelivered_done_send_is_skipped(deps: SenderDependencies, providers: dict[str, FakeProvider]) -> None:
    the_job = job([recipient(2), recipient(4)])
    first = process_job(the_job, deps)
    assert [r.status for r in first.records] == ["sent", "sent"]
    assert process_job(the_job, deps).records == []
    assert sorted(providers["kakao_brand"].send_ids()) == ["s0002", "s0004"]


def test_retryable_error_keeps_reservation_and_lets_retry_send(
    deps: SenderDependencies, providers: dict[str, FakeProvider]
) -> None:
    providers["kakao_brand"].retryable_rate = 1.0
    the_job = job([recipient(2)])
    first = process_job(the_job, deps)
    assert first.retry
    assert first.records == []
    assert deps.caps.reserved == {"s0002": "kakao_brand"}  # type: ignore[attr-defined]
    providers["kakao_brand"].retryable_rate = 0.0
    assert [r.status for r in process_job(the_job, deps).records] == ["sent"]


def test_capped_user_is_recorded_not_sent(deps: SenderDependencies, providers: dict[str, FakeProvider]) -> None:
    deps.caps.refuse = {2: "week:topic:promo", 4: "resend_after"}  # type: ignore[attr-defined]
    records = process_job(job([recipient(2), recipient(4)]), deps).records
    assert sorted(r.reason for r in records) == ["capped:week:topic:promo", "resend_after"]
    assert providers["kakao_brand"].outbox == []


def test_template_error_fails_one_user_and_the_rest_goes_on(
    deps: SenderDependencies, providers: dict[str, FakeProvider]
) -> None:
    broken = recipient(2, variables={})  # no name, template has no default
    records = process_job(job([broken, recipient(4)]), deps).records
    assert sorted((r.user_id, r.status, r.reason) for r in records) == [
        (2, "failed", "failed:template"),
        (4, "sent", "sent"),
    ]
    assert deps.caps.released == ["s0002"]  # type: ignore[attr-defined]


def test_inactive_campaign_is_skipped_and_recorded(
    deps: SenderDependencies, providers: dict[str, FakeProvider]
) -> None:
    deps.rulesets.active_set = RULESET.model_copy(update={"campaigns": []})  # type: ignore[attr-defined]
    records = process_job(job([recipient(2)]), deps).records
    assert [(r.status, r.reason) for r in records] == [("skipped", "skipped:campaign_inactive")]
    assert providers["kakao_brand"].calls == 0


def test_early_and_late_recipients_wait_instead_of_being_dropped(
    deps: SenderDependencies, providers: dict[str, FakeProvider]
) -> None:
    # Given at 20:30 KST one recipient due in 30 min and one whose window closed (20:00 KST)
    deps.clock.now = datetime(2026, 12, 1, 11, 30, tzinfo=UTC)  # type: ignore[attr-defined]
    early = recipient(2, not_before=deps.clock.now + timedelta(minutes=30))  # type: ignore[attr-defined]
    late = recipient(4, not_after=deps.clock.now - timedelta(minutes=30))  # type: ignore[attr-defined]
    outcome = process_job(job([early, late]), deps)
    assert outcome.records == []
    assert outcome.requeued == 2
    queues: FakeQueues = deps.queues  # type: ignore[assignment]
    queued = {r.user_id: (delay, r) for _, follow, delay in queues.sent for r in follow.recipients}
    assert queued[2][0] == 900  # SQS caps delays at 15 minutes; the next delivery re-delays
    assert queued[4][0] == 900
    # The late one reopens at 09:00 KST next day (00:00 UTC), within the send window and not at night
    assert queued[4][1].not_before == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    assert queued[4][1].not_after == datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    assert providers["kakao_brand"].calls == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"job_id": "x"}), "violates the SendJob schema"),
    ],
)
def test_bad_job_bodies_raise_with_the_reason(body: str, message: str) -> None:
    with pytest.raises(BadJobError, match=message):
        parse_job(body, "sms")


def test_unknown_channel_and_wrong_queue_are_rejected() -> None:
    body = job([recipient(2)]).model_dump(mode="json")
    with pytest.raises(BadJobError, match="channel"):
        parse_job(json.dumps({**body, "channel": "fax"}), "sms")
    with pytest.raises(BadJobError, match="this worker sends 'sms'"):
        parse_job(json.dumps(body), "sms")


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": "r",
                "body": body,
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:ap-northeast-2:123456789012:q",
                "awsRegion": "ap-northeast-2",
            }
            for i, body in enumerate(bodies)
        ]
    }


def test_batch_poison_message_fails_alone_and_deliveries_are_one_object(
    deps: SenderDependencies, tmp_path: Path
) -> None:
    # Given a batch with a poison body between two good jobs
    good1 = job([recipient(2)]).model_dump_json()
    good2 = job([recipient(4)], job_id="j2").model_dump_json()
    response = handle_batch(sqs_event(good1, "garbage", good2), None, deps, "kakao_brand")
    # Then only the poison one is reported, and one JSONL object holds both deliveries
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    keys = deps.deliveries.list_keys("deliveries/")
    assert len(keys) == 1
    assert keys[0].startswith("deliveries/dt=2026-12-01/kakao_brand-")
    rows = [json.loads(line) for line in deps.deliveries.get_bytes(keys[0]).splitlines()]
    assert sorted(row["send_id"] for row in rows) == ["s0002", "s0004"]


def test_logs_of_a_full_batch_carry_no_pii(deps: SenderDependencies, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a logger wired like the handler's (Powertools + masking formatter)
    from aws_lambda_powertools import Logger

    from funnelcast.sending.logging import masking_formatter

    logger = Logger(service="test_sending_pii", logger_formatter=masking_formatter(), level=logging.INFO)
    deps.log = lambda message, extra: logger.info(message, extra=extra)
    people = [recipient(i, contact=Contact(phone=f"+8210777{i:05d}", email=f"user{i}@mail.example")) for i in range(6)]
    broken = recipient(9, variables={}, contact=Contact(phone="+821099990000", kakao_friend=True))
    logger.info("contact check", extra={"contact": people[0].contact.model_dump(), "note": "mail user0@mail.example"})
    handle_batch(sqs_event(job([*people, broken]).model_dump_json(), "nope"), None, deps, "kakao_brand")
    logged = capsys.readouterr().out
    assert "template failed" in logged
    assert "poison job" in logged
    for person in [*people, broken]:
        assert person.contact.phone
        assert person.contact.phone not in logged
        assert str(person.variables.get("name", "홍길동")) not in logged
        if person.contact.email:
            assert person.contact.email not in logged


def test_provider_calls_run_concurrently_bounded(deps: SenderDependencies) -> None:
    # Given a provider that takes 50 ms and counts how many calls overlap
    active, peak, lock = [0], [0], threading.Lock()
    inner = FakeProvider("kakao_brand")

    class Slow:
        channel = "kakao_brand"

        def send(self, request: Any) -> str:
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= 1
            return inner.send(request)

    deps.providers = {"kakao_brand": Slow()}
    deps.concurrency = 10
    friends = [recipient(i * 2) for i in range(1, 41)]
    for start in range(0, 40, 100):
        assert len(process_job(job(friends[start : start + 100]), deps).records) == 40
    assert peak[0] == 10


def test_handler_import_is_light_and_never_imports_pandas() -> None:
    code = (
        "import sys; sys.path.insert(0, 'functions/send_message'); import send_message; "
        "bad = [m for m in ('pandas', 'numpy', 'pyarrow', 'boto3', 'liquid') if m in sys.modules]; print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


def test_metrics_count_outcomes_per_job(deps: SenderDependencies) -> None:
    # Given a recording metrics sink, When a job sends one and falls back one
    seen: list[tuple[str, str, float]] = []

    class Recorder:
        def add_metric(self, name: str, unit: str, value: float) -> None:
            seen.append((name, unit, value))

    deps.metrics = Recorder()
    process_job(job([recipient(1), recipient(2)]), deps)
    counts = {name: value for name, unit, value in seen if unit == "Count"}
    assert counts == {"Sent": 1, "Fallback": 1}
    assert sum(1 for name, _, _ in seen if name == "ProviderLatency") == 2


def test_fake_faults_are_seeded_and_every_call_is_kept() -> None:
    # Given a fake that throttles half the time, When it is called 200 times
    from funnelcast.errors import ProviderError
    from funnelcast.sending.providers.base import ProviderRequest
    from funnelcast.sending.render import RenderedMessage

    def attempt(fake: FakeProvider) -> list[str]:
        for i in range(200):
            request = ProviderRequest(
                f"s{i}", "cart", i, Purpose.ADVERTISING, Contact(phone="+8210"), RenderedMessage("sms", "hi")
            )
            with contextlib.suppress(ProviderError):
                fake.send(request)
        return [result for _, _, result in fake.attempts]

    first = attempt(FakeProvider("sms", retryable_rate=0.5, seed=7))
    # Then roughly half were throttled, the same way on every run, and only accepted ones are in the outbox
    assert 70 < first.count("sms:throttled") < 130
    assert first == attempt(FakeProvider("sms", retryable_rate=0.5, seed=7))
    assert len(first) == 200


def test_capped_on_the_fallback_channel_gives_the_place_back(deps: SenderDependencies) -> None:
    # Given user 1 handed from kakao_brand to sms, where the sms day cap refuses
    process_job(job([recipient(1)]), deps)
    deps.caps.refuse = {1: "day:sms"}  # type: ignore[attr-defined]
    records = run_fallbacks(deps)
    assert [(r.status, r.reason, r.channel) for r in records] == [("capped", "capped:day:sms", "sms")]
    assert deps.caps.released == ["s0001"]  # type: ignore[attr-defined]
