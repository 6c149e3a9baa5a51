"""End to end: a small demo (300 users, 2 simulated days) and the SPEC's invariants on its outputs.

Given the whole pipeline on in-process moto (resources from template.yaml, the example rules
activated, synthetic data arriving in exports, the real handlers on a simulated clock), when the
demo has run, then every invariant of issue #7 holds for every user and day. The demo runs once
per session (shared by the xdist workers through a lock); each test checks one invariant.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import e2e_invariants as inv
import pandas as pd
import pytest

from funnelcast.demo.runner import DemoConfig, DemoRun

USERS, DAYS, SEED = 300, 2, 11


@pytest.fixture(scope="session")
def demo(request: pytest.FixtureRequest) -> inv.DemoOutputs:
    with inv.shared_once(request, "e2e-demo") as (out, needed):
        if needed:
            DemoRun(DemoConfig(users=USERS, days=DAYS, seed=SEED, out=out)).run()
        return inv.load_outputs(out)


def ended_at(demo: inv.DemoOutputs) -> pd.Timestamp:
    return pd.Timestamp(datetime.fromisoformat(demo.summary["ended_at"]))


def test_every_stage_ran_and_messages_went_out(demo: inv.DemoOutputs) -> None:
    """Then no stage is missing, nothing errored, and the run did real work (a test that cannot pass empty)."""
    assert all(status == "ok" for status in demo.summary["stages"].values()), demo.summary["stages"]
    assert demo.summary["errors"] == []
    counts = demo.summary["counts"]
    assert counts["planner_runs"] >= DAYS * 24  # cart_recovery is hourly
    assert len(demo.outbox) > 50
    assert set(demo.outbox["channel"]) >= {"push", "kakao_brand", "kakao_alimtalk"}
    assert (demo.feedback["type"] == "unsubscribed").any()
    for name in ("deliveries", "decisions", "kpis", "outbox"):
        assert (demo.out / f"{name}.parquet").is_file()
    assert "<svg" in (demo.out / "report.html").read_text(encoding="utf-8")


def test_no_user_over_a_cap_in_their_local_day_or_week(demo: inv.DemoOutputs) -> None:
    assert not (problems := inv.cap_violations(demo)), inv.first(problems)


def test_no_send_id_twice(demo: inv.DemoOutputs) -> None:
    assert not (problems := inv.duplicate_violations(demo)), inv.first(problems)


def test_resend_after_is_respected(demo: inv.DemoOutputs) -> None:
    assert not (problems := inv.resend_after_violations(demo)), inv.first(problems)


def test_holdout_never_receives(demo: inv.DemoOutputs) -> None:
    assert (demo.decisions["planned_outcome"] == "holdout").any()
    assert not (problems := inv.holdout_violations(demo)), inv.first(problems)


def test_consent_and_no_advertising_alimtalk(demo: inv.DemoOutputs) -> None:
    assert not (problems := inv.consent_violations(demo)), inv.first(problems)


def test_night_ban_and_send_windows(demo: inv.DemoOutputs) -> None:
    assert (demo.decisions["planned_outcome"] == "waiting").any()  # the clock crossed closed windows
    assert not (problems := inv.window_violations(demo)), inv.first(problems)


def test_exactly_one_final_outcome_per_audience_member_and_run(demo: inv.DemoOutputs) -> None:
    assert not (problems := inv.outcome_violations(demo, ended_at=ended_at(demo))), inv.first(problems)


def test_unsubscribe_is_respected(demo: inv.DemoOutputs) -> None:
    assert not (problems := inv.unsubscribe_violations(demo)), inv.first(problems)


def test_ad_label_and_opt_out_on_advertising_sms_and_kakao(demo: inv.DemoOutputs) -> None:
    assert not (problems := inv.label_violations(demo)), inv.first(problems)


def test_every_received_message_has_its_delivery_record(demo: inv.DemoOutputs) -> None:
    assert not (problems := inv.delivery_record_violations(demo)), inv.first(problems)


def test_aws_requests_are_counted_per_service_and_per_thousand(demo: inv.DemoOutputs) -> None:
    """The botocore hooks saw the pipeline's calls: the cap table, the queues and the buckets."""
    requests = json.loads((demo.out / "aws_requests.json").read_text(encoding="utf-8"))
    services = requests["pipeline"]["services"]
    assert services["dynamodb"]["operations"]["UpdateItem"] > 0
    assert services["sqs"]["operations"]["SendMessageBatch"] > 0
    assert services["s3"]["operations"]["PutObject"] > 0
    assert requests["delivered_messages"] == int((demo.deliveries["status"] == "sent").sum())
    assert requests["pipeline"]["per_1000_delivered"] == pytest.approx(
        requests["pipeline"]["total"] * 1000 / requests["delivered_messages"], abs=0.01
    )


def test_outputs_follow_the_spec_columns(demo: inv.DemoOutputs) -> None:
    spec_decisions = ["run_id", "campaign_id", "user_id", "variant_id", "outcome", "reason", "decided_at"]
    spec_deliveries = ["send_id", "run_id", "campaign_id", "user_id", "variant_id", "channel", "status",
                       "sent_at", "local_sent_at", "purpose", "topic"]  # fmt: skip
    assert set(spec_decisions) <= set(demo.decisions.columns)
    assert set(spec_deliveries) <= set(demo.deliveries.columns)
    assert {"channel", "send_id", "user_id", "body", "purpose"} <= set(demo.outbox.columns)
    kpis = pd.read_parquet(Path(demo.out) / "kpis.parquet")
    assert {"campaign_id", "sent", "ctr", "cvr", "lift"} <= set(kpis.columns)
