"""The example rule set on generated data: the real segment engine's snapshot feeds the planner (no AWS)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pandas as pd
from planning_builders import FakeQueues, FakeUsage, FakeWaits

from funnelcast.data.generate import generate
from funnelcast.planning.planner import PlannerDependencies, plan_campaign
from funnelcast.planning.runs import MemoryRunRecords
from funnelcast.rules.ruleset import load_ruleset, rule_paths
from funnelcast.segments.engine import Frames, compute_segments
from funnelcast.segments.snapshot import write_snapshot
from funnelcast.sending.worker import parse_job
from funnelcast.storage import LocalStore

REPO = Path(__file__).resolve().parents[3]
WEDNESDAY_10_SEOUL = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def test_the_wednesday_10am_slot_of_the_example_rules(tmp_path: Path) -> None:
    # Given the example rules, 2,000 generated customers and the engine's snapshot at Wednesday 10:00 Seoul
    ruleset = load_ruleset(rule_paths([str(REPO / "segment_rules")])).ruleset
    customers, events = generate(2000, 30000, seed=7, end=WEDNESDAY_10_SEOUL)
    result = compute_segments(ruleset, Frames(customers, events), WEDNESDAY_10_SEOUL)
    rules, data = LocalStore(tmp_path / "rules"), LocalStore(tmp_path / "data")
    rules.put_bytes(f"rulesets/{ruleset.rules_hash}/bundle.json", ruleset.canonical_json())
    rules.put_bytes("active.json", json.dumps({"rules_hash": ruleset.rules_hash}).encode())
    write_snapshot(
        data,
        membership=result.membership,
        features=result.features,
        at=WEDNESDAY_10_SEOUL,
        rules_hash=ruleset.rules_hash,
        manifest={"counts": result.counts},
    )
    deps = PlannerDependencies(
        rules=rules,
        data=data,
        usage=FakeUsage(),
        runs=MemoryRunRecords(),
        queues=FakeQueues(),
        waits=FakeWaits(),
        clock=lambda: WEDNESDAY_10_SEOUL,
    )
    # When dormant_winback's schedule fires
    summary = plan_campaign("dormant_winback", WEDNESDAY_10_SEOUL, deps)
    # Then every campaign due at that minute was planned with it, highest priority first
    assert summary.status == "done"
    assert [run.split("@")[0] for run in summary.planned_with] == [
        "cart_recovery",
        "welcome_coupon",
        "review_referral",
        "dormant_winback",
    ]
    # And each run has exactly one decision per audience member of the snapshot
    for run in summary.planned_with:
        campaign_id = run.split("@")[0]
        decisions = pd.read_parquet(io.BytesIO(data.get_bytes(f"runs/{run}/decisions.parquet")))
        assert len(decisions) == decisions["user_id"].nunique() == result.counts[f"@audience:{campaign_id}"]
    # And the generator's invalid zone fell back to the policy default, counted
    assert summary.timezone_defaulted > 0
    # And every enqueued job is one the senders parse, carrying only template variables
    queues = cast("FakeQueues", deps.queues)
    jobs = [parse_job(body, channel) for channel, bodies in queues.sent.items() for body in bodies]
    assert jobs
    assert all(set(r.variables) <= {"name", "product_name"} for job in jobs for r in job.recipients)
