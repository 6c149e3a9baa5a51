"""End to end under faults: 10% provider errors, 5% worker crashes between the provider's answer and
the record, duplicate SQS deliveries and a poison message (300 users, 2 simulated days).

Given the same pipeline with the fault injection of ``funnelcast demo --faults``, when the demo has
run, then the SPEC's invariants still hold, nothing is delivered twice, and every send ends
``sent``, ``failed:<reason>``, ``unknown`` or in a dead-letter queue with its reason.
"""

from __future__ import annotations

from datetime import datetime

import e2e_invariants as inv
import pandas as pd
import pytest

from funnelcast.demo.runner import DemoConfig, DemoRun, Faults

USERS, DAYS, SEED = 300, 2, 23


@pytest.fixture(scope="session")
def faulty(request: pytest.FixtureRequest) -> inv.DemoOutputs:
    with inv.shared_once(request, "e2e-demo-faults") as (out, needed):
        if needed:
            DemoRun(DemoConfig(users=USERS, days=DAYS, seed=SEED, out=out, faults=Faults())).run()
        return inv.load_outputs(out)


def test_the_faults_were_really_injected(faulty: inv.DemoOutputs) -> None:
    counts = faulty.summary["counts"]
    assert counts["injected_crashes"] > 0
    assert counts["duplicates_injected"] > 0
    assert counts["poison_messages"] == 1
    assert (faulty.decisions["outcome"] == "unknown").any()  # a crash after the provider leaves "unknown"
    assert faulty.summary["errors"] == []


def test_poison_message_ends_in_the_dlq_with_its_reason(faulty: inv.DemoOutputs) -> None:
    poison = [letter for letter in faulty.dead_letters if '"poison"' in letter["body"]]
    assert len(poison) == 1
    assert poison[0]["dlq"] == "SmsDLQ"
    assert "not valid JSON" in poison[0]["reason"]
    assert poison[0]["receive_count"] >= 5  # maxReceiveCount of the template's redrive policy


def test_nothing_delivered_twice(faulty: inv.DemoOutputs) -> None:
    assert not (problems := inv.duplicate_violations(faulty)), inv.first(problems)


def test_every_send_ends_sent_failed_unknown_or_dead_lettered(faulty: inv.DemoOutputs) -> None:
    ended = pd.Timestamp(datetime.fromisoformat(faulty.summary["ended_at"]))
    assert not (problems := inv.outcome_violations(faulty, ended_at=ended)), inv.first(problems)
    handed = faulty.decisions[faulty.decisions["planned_outcome"].isin(["queued", "waiting"])]
    settled = handed[handed["outcome"] != "waiting"]
    assert set(settled["outcome"]) <= inv.FINAL_SEND_OUTCOMES


def test_every_received_message_has_its_delivery_record(faulty: inv.DemoOutputs) -> None:
    assert not (problems := inv.delivery_record_violations(faulty)), inv.first(problems)


@pytest.mark.parametrize(
    "check",
    [
        inv.cap_violations,
        inv.resend_after_violations,
        inv.holdout_violations,
        inv.consent_violations,
        inv.window_violations,
        inv.unsubscribe_violations,
        inv.label_violations,
    ],
    ids=lambda check: check.__name__.removesuffix("_violations"),
)
def test_spec_invariants_hold_under_faults(faulty: inv.DemoOutputs, check: object) -> None:
    assert callable(check)
    assert not (problems := check(faulty)), inv.first(problems)
