"""Send jobs and their SQS batches: sizes, the 10-entry batches, partial failures, clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from planning_builders import T, audience_of, make_campaign, make_features, make_policy

from funnelcast.aws.queues import MAX_BATCH_BYTES, JobQueue, batches
from funnelcast.errors import QueueError
from funnelcast.planning.arbitration import arbitrate
from funnelcast.planning.batches import MAX_JOB_BYTES, build_jobs
from funnelcast.planning.eligibility import PlanContext, evaluate_audience
from funnelcast.sending.worker import parse_job


class FlakySqs:
    """An SQS client stand-in: ``failures`` entries fail on the first attempt(s)."""

    def __init__(self, failures: int = 0, attempts_failing: int = 1) -> None:
        self.failures = failures
        self.attempts_failing = attempts_failing
        self.requests: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        del QueueUrl
        self.requests.append(Entries)
        if len(self.requests) <= self.attempts_failing and self.failures:
            failed = Entries[: self.failures]
            return {"Failed": [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in failed]}
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def bodies(n: int, size: int = 100) -> list[str]:
    return [json.dumps({"job_id": f"j{i}", "pad": "x" * size}) for i in range(n)]


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=120_000), max_size=40))
def test_batches_keep_order_and_both_sqs_limits(sizes: list[int]) -> None:
    items = [json.dumps({"job_id": f"j{i}", "pad": "x" * s}) for i, s in enumerate(sizes)]
    groups = batches(items)
    assert [b for group in groups for b in group] == items
    assert all(1 <= len(g) <= 10 and sum(len(b.encode()) for b in g) <= MAX_BATCH_BYTES for g in groups)


def test_25_jobs_take_3_requests_and_failed_entries_are_retried_alone() -> None:
    sqs = FlakySqs(failures=2)
    queue = JobQueue({"sms": "https://sqs/sms"}, sqs_client=sqs)
    used = queue.send_jobs("sms", bodies(25))
    # Then 3 batches + 1 retry of the 2 failed entries
    assert used == queue.requests == 4
    assert [len(r) for r in sqs.requests] == [10, 2, 10, 5]


def test_entries_failing_every_attempt_raise_naming_the_jobs() -> None:
    queue = JobQueue({"sms": "https://sqs/sms"}, sqs_client=FlakySqs(failures=1, attempts_failing=99))
    with pytest.raises(QueueError, match=r"\['j0'\] not enqueued after 3 attempts"):
        queue.send_jobs("sms", bodies(3))


def test_unknown_channel_and_oversized_job_are_clear_errors() -> None:
    queue = JobQueue({"sms": "https://sqs/sms"}, sqs_client=FlakySqs())
    with pytest.raises(QueueError, match="no queue URL configured for channel 'push'"):
        queue.send_jobs("push", bodies(1))
    with pytest.raises(QueueError, match=r"job j0 is \d+ bytes, over the SQS limit"):
        queue.send_jobs("sms", bodies(1, size=MAX_BATCH_BYTES))


def test_jobs_hold_at_most_100_recipients_and_stay_small_even_with_big_variables() -> None:
    # Given 250 queued users whose template variable is 2 KB of Korean text each
    features = make_features(250, name=["가" * 700] * 250)
    campaign = make_campaign()
    context = PlanContext(campaign, make_policy(), "promo_a@20261201T0100Z", T)
    evaluation = evaluate_audience(context, audience_of(features))
    arbitrate(context.policy, [evaluation], {})
    # When jobs are built
    jobs = build_jobs(context, evaluation.frame, audience_of(features), "f" * 16, T)
    # Then every job parses for the sender, holds <=100 recipients and fits the byte budget; none lost
    assert all(len(j.body.encode()) <= MAX_JOB_BYTES and len(j.job.recipients) <= 100 for j in jobs)
    parsed = [parse_job(j.body, "kakao_brand") for j in jobs]
    assert sorted(r.user_id for job in parsed for r in job.recipients) == list(range(1, 251))
    assert len({job.job_id for job in parsed}) == len(parsed)
    # And only the waterfall's contacts travel (no email for a Kakao/SMS campaign)
    assert all(r.contact.email is None and r.contact.phone for job in parsed for r in job.recipients)
