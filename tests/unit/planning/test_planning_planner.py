"""The planner service with a local store and in-memory fakes: runs, slots, failures, waiting batches."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import cast

import pandas as pd
import pytest
from planning_builders import FakeQueues, FakeUsage, FakeWaits, T, make_campaign, make_features, make_policy

from funnelcast.caps.policy import UserCapState
from funnelcast.errors import QueueError
from funnelcast.jobs import DecisionRecord, Outcome
from funnelcast.planning.pending import read_pending
from funnelcast.planning.planner import PlannerDependencies, WaitingBatchError, plan_campaign, release_waiting
from funnelcast.planning.runs import MemoryRunRecords
from funnelcast.rules.models import RuleSet
from funnelcast.segments.snapshot import write_snapshot
from funnelcast.sending.worker import parse_job
from funnelcast.storage import LocalStore


def activate(store: LocalStore, ruleset: RuleSet) -> None:
    store.put_bytes(f"rulesets/{ruleset.rules_hash}/bundle.json", ruleset.canonical_json())
    store.put_bytes("active.json", json.dumps({"rules_hash": ruleset.rules_hash}).encode())


def snapshot(store: LocalStore, features: pd.DataFrame, members: dict[str, list[int]], rules_hash: str) -> None:
    rows = [(user, segment) for segment, users in members.items() for user in users]
    membership = pd.DataFrame(rows, columns=["user_id", "segment_id"])
    # As the engine writes it: every evaluated segment is a category, even an empty one.
    membership["segment_id"] = pd.Categorical(membership["segment_id"], categories=list(members))
    write_snapshot(store, membership=membership, features=features, at=T, rules_hash=rules_hash, manifest={})


@pytest.fixture
def deps(tmp_path: Path) -> PlannerDependencies:
    return PlannerDependencies(
        rules=LocalStore(tmp_path / "rules"),
        data=LocalStore(tmp_path / "data"),
        usage=FakeUsage(),
        runs=MemoryRunRecords(),
        queues=FakeQueues(),
        waits=FakeWaits(),
        clock=lambda: T + timedelta(seconds=20),
    )


def decisions(deps: PlannerDependencies, run: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(deps.data.get_bytes(f"runs/{run}/decisions.parquet")))


def setup_single(deps: PlannerDependencies, n: int = 30) -> RuleSet:
    campaign = make_campaign(holdout="10%", send_window={"start": "09:00", "end": "20:00"})
    ruleset = RuleSet(campaigns=[campaign], policy=make_policy([{"max": 2, "per": "day"}]))
    activate(deps.rules, ruleset)  # type: ignore[arg-type]
    features = make_features(n)
    features.loc[1, "timezone"] = "America/New_York"
    features.loc[2, "phone"] = None
    audience = list(range(1, n + 1))
    snapshot(deps.data, features, {"@audience:promo_a": audience, "@exclude:promo_a": [n]}, ruleset.rules_hash)  # type: ignore[arg-type]
    return ruleset


def test_a_run_records_every_member_and_enqueues_parseable_jobs(deps: PlannerDependencies) -> None:
    # Given an active campaign and a snapshot of 30 members (one excluded, one abroad, one without phone)
    setup_single(deps)
    # When its schedule fires
    summary = plan_campaign("promo_a", T, deps)
    # Then every member has exactly one valid decision record
    run = "promo_a@20261201T0100Z"
    rows = decisions(deps, run)
    assert summary.status == "done"
    assert sorted(rows["user_id"]) == list(range(1, 31))
    for record in rows.to_dict("records"):
        DecisionRecord.model_validate({k: (None if pd.isna(v) else v) for k, v in record.items()})
    assert sum(summary.outcomes.values()) == summary.audience == 30
    assert summary.timezone_defaulted == 0
    by_user = rows.set_index("user_id")
    assert by_user.loc[30, "outcome"] == Outcome.EXCLUDED
    assert by_user.loc[3, "outcome"] == Outcome.NO_CHANNEL
    assert by_user.loc[2, "reason"] == "waiting:2026-12-01T14:00:00+00:00"
    # And the queued users are in jobs the sender parses, each send id once
    queues = cast("FakeQueues", deps.queues)
    jobs = [parse_job(body, "kakao_brand") for body in queues.sent["kakao_brand"]]
    queued = set(by_user.index[by_user["outcome"] == "queued"])
    assert {r.user_id for job in jobs for r in job.recipients} == queued
    assert all(job.rules_hash == summary.rules_hash and len(job.recipients) <= 100 for job in jobs)
    # And the waiting user is stored in a batch with a one-time schedule at the window opening
    waits = cast("FakeWaits", deps.waits)
    key = "waiting/promo_a@20261201T0100Z/20261201T1400Z.json"
    assert summary.waiting_batches == [key]
    assert waits.scheduled[key] == T + timedelta(hours=13)
    stored = json.loads(deps.data.get_bytes(key))
    assert [r["user_id"] for job in stored["jobs"] for r in job["recipients"]] == [2]
    # And the summary and the run record say done
    assert json.loads(deps.data.get_bytes(f"runs/{run}/summary.json"))["outcomes"] == summary.outcomes
    assert deps.runs.runs[run]["status"] == "done"  # type: ignore[attr-defined]


def test_a_second_firing_of_the_same_minute_is_a_no_op(deps: PlannerDependencies) -> None:
    setup_single(deps)
    plan_campaign("promo_a", T, deps)
    queues = cast("FakeQueues", deps.queues)
    sent = {channel: list(bodies) for channel, bodies in queues.sent.items()}
    # When the schedule fires again for the same time (seconds differ)
    again = plan_campaign("promo_a", T + timedelta(seconds=30), deps)
    # Then nothing is enqueued twice
    assert again.status == "noop"
    assert queues.sent == sent


def test_campaigns_due_in_the_same_slot_are_planned_together_by_priority(deps: PlannerDependencies) -> None:
    # Given two campaigns with the same schedule and a cap of one message a day
    low = make_campaign(id="low", priority=20)
    high = make_campaign(id="high", priority=80, resend_after=timedelta(days=7))
    ruleset = RuleSet(campaigns=[low, high], policy=make_policy([{"max": 1, "per": "day"}]))
    activate(deps.rules, ruleset)  # type: ignore[arg-type]
    members = {"@audience:low": [1, 2, 3], "@audience:high": [2, 3, 4]}
    snapshot(deps.data, make_features(4), members, ruleset.rules_hash)  # type: ignore[arg-type]
    # When the LOW one's schedule happens to fire first
    summary = plan_campaign("low", T, deps)
    # Then both were planned in one pass; users in both go to the higher priority
    assert summary.planned_with == ["high@20261201T0100Z", "low@20261201T0100Z"]
    low_rows = decisions(deps, "low@20261201T0100Z").set_index("user_id")["reason"].to_dict()
    high_rows = decisions(deps, "high@20261201T0100Z").set_index("user_id")["reason"].to_dict()
    assert high_rows == {2: "queued", 3: "queued", 4: "queued"}
    assert low_rows == {1: "queued", 2: "lower_priority", 3: "lower_priority"}
    # And the high one's own firing finds its run done: a no-op; the cap table was read once, for
    # the pending users of both campaigns: this week, and last week for "high" (resend_after 7d)
    assert plan_campaign("high", T, deps).status == "noop"
    both = {"2026-W48", "2026-W49"}
    assert deps.usage.calls == [{1: {"2026-W49"}, 2: both, 3: both, 4: both}]  # type: ignore[attr-defined]


def test_no_snapshot_fails_the_run_clearly_and_a_later_firing_retries(deps: PlannerDependencies) -> None:
    # Given active rules but no segment snapshot yet
    ruleset = RuleSet(campaigns=[make_campaign()], policy=make_policy())
    activate(deps.rules, ruleset)  # type: ignore[arg-type]
    # When the schedule fires
    summary = plan_campaign("promo_a", T, deps)
    # Then the run is failed with a message naming what is missing, nothing enqueued
    assert summary.status == "failed"
    assert "no segment snapshot yet" in summary.error
    assert deps.runs.runs["promo_a@20261201T0100Z"]["status"] == "failed"  # type: ignore[attr-defined]
    assert deps.queues.sent == {}  # type: ignore[attr-defined]
    # And once a snapshot exists, a retry of the failed run plans it
    snapshot(deps.data, make_features(2), {"@audience:promo_a": [1, 2]}, ruleset.rules_hash)  # type: ignore[arg-type]
    assert plan_campaign("promo_a", T, deps).status == "done"


def test_a_snapshot_without_the_campaign_fails_only_that_campaign(deps: PlannerDependencies) -> None:
    # Given a snapshot computed before the campaign "fresh" was added
    old, fresh = make_campaign(id="old"), make_campaign(id="fresh")
    ruleset = RuleSet(campaigns=[old, fresh], policy=make_policy())
    activate(deps.rules, ruleset)  # type: ignore[arg-type]
    snapshot(deps.data, make_features(2), {"@audience:old": [1, 2]}, "0" * 16)  # type: ignore[arg-type]
    # When the slot fires
    summary = plan_campaign("fresh", T, deps)
    # Then fresh failed naming itself; old was planned
    assert summary.status == "failed"
    assert "no audience for campaign 'fresh'" in summary.error
    assert decisions(deps, "old@20261201T0100Z")["reason"].tolist() == ["queued", "queued"]


def test_an_empty_audience_is_a_recorded_run_with_zero_sends(deps: PlannerDependencies) -> None:
    ruleset = RuleSet(campaigns=[make_campaign()], policy=make_policy())
    activate(deps.rules, ruleset)  # type: ignore[arg-type]
    snapshot(deps.data, make_features(3), {"@audience:promo_a": [], "@exclude:promo_a": [1]}, ruleset.rules_hash)  # type: ignore[arg-type]
    summary = plan_campaign("promo_a", T, deps)
    assert (summary.status, summary.audience, summary.outcomes, summary.jobs_queued) == ("done", 0, {}, 0)
    assert len(decisions(deps, "promo_a@20261201T0100Z")) == 0
    assert deps.usage.calls == []  # type: ignore[attr-defined]  # nothing to arbitrate, nothing read


def test_a_campaign_no_longer_active_is_reported_not_run(deps: PlannerDependencies) -> None:
    activate(deps.rules, RuleSet(campaigns=[make_campaign()], policy=make_policy()))  # type: ignore[arg-type]
    summary = plan_campaign("deleted_one", T, deps)
    assert summary.status == "inactive"
    assert "not in the active rule set" in summary.error


def test_release_waiting_enqueues_once(deps: PlannerDependencies) -> None:
    # Given a planned run with a waiting batch
    setup_single(deps)
    summary = plan_campaign("promo_a", T, deps)
    key = summary.waiting_batches[0]
    queues = cast("FakeQueues", deps.queues)
    before = len(queues.sent["kakao_brand"])
    # When its schedule fires (twice)
    first = release_waiting(key, deps)
    second = release_waiting(key, deps)
    # Then its jobs were enqueued once, with their not_before intact
    assert (first.status, first.recipients, second.status) == ("released", 1, "noop")
    released = parse_job(queues.sent["kakao_brand"][before], "kakao_brand")
    assert released.recipients[0].not_before == T + timedelta(hours=13)
    assert len(queues.sent["kakao_brand"]) == before + 1


@pytest.mark.parametrize("key", ["runs/x/summary.json", "waiting/promo_a@20261201T0100Z/nope.json"])
def test_release_of_a_bad_key_is_a_clear_error(deps: PlannerDependencies, key: str) -> None:
    with pytest.raises(WaitingBatchError, match="waiting"):
        release_waiting(key, deps)


class BrokenQueues:
    """Enqueues the first campaign's jobs, then the queue service goes away."""

    def __init__(self) -> None:
        self.working = FakeQueues()

    def send_jobs(self, channel: str, bodies: Sequence[str]) -> int:
        if any('"campaign_id":"low"' in body for body in bodies):
            raise QueueError("cannot enqueue: ServiceUnavailable")
        return int(self.working.send_jobs(channel, bodies))


def test_an_enqueue_error_fails_only_the_unfinished_runs_and_propagates(deps: PlannerDependencies) -> None:
    # Given a slot of two campaigns and SQS failing for the second one planned
    deps.queues = BrokenQueues()
    low, high = make_campaign(id="low", priority=20), make_campaign(id="high", priority=80)
    ruleset = RuleSet(campaigns=[low, high], policy=make_policy())
    activate(deps.rules, ruleset)  # type: ignore[arg-type]
    snapshot(deps.data, make_features(2), {"@audience:low": [1], "@audience:high": [2]}, ruleset.rules_hash)  # type: ignore[arg-type]
    # When planned, the error surfaces (the Scheduler retries)
    with pytest.raises(QueueError):
        plan_campaign("high", T, deps)
    # Then the finished run stands and the unfinished one is failed, so a retry can claim it again
    runs = deps.runs.runs  # type: ignore[attr-defined]
    assert (runs["high@20261201T0100Z"]["status"], runs["low@20261201T0100Z"]["status"]) == ("done", "failed")
    deps.queues = FakeQueues()
    assert plan_campaign("low", T, deps).status == "done"


NIGHT = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)  # 22:00 in Seoul: advertising waits for 08:00


def setup_hourly(deps: PlannerDependencies, *, caps: Sequence[dict[str, object]] = ()) -> RuleSet:
    hourly = make_campaign(schedule={"rate": "1 hour", "timezone": "Asia/Seoul"}, resend_after="7d")
    ruleset = RuleSet(campaigns=[hourly], policy=make_policy(list(caps)))
    activate(deps.rules, ruleset)  # type: ignore[arg-type]
    snapshot(deps.data, make_features(3), {"@audience:promo_a": [1, 2, 3]}, ruleset.rules_hash)  # type: ignore[arg-type]
    return ruleset


def plan_at(deps: PlannerDependencies, moment: datetime) -> dict[int, str]:
    deps.clock = lambda: moment + timedelta(seconds=20)
    summary = plan_campaign("promo_a", moment, deps)
    return decisions(deps, summary.run_id).set_index("user_id")["reason"].to_dict()


def test_an_hourly_campaign_does_not_plan_a_waiting_user_again(deps: PlannerDependencies) -> None:
    # Given an hourly advertising campaign (resend_after 7d) whose 22:00 run left everyone waiting
    setup_hourly(deps)
    first = plan_at(deps, NIGHT)
    assert set(first.values()) == {"waiting:2026-12-01T23:00:00+00:00"}
    # When the 23:00 run looks at the same users (no reservation exists yet: nothing was sent)
    second = plan_at(deps, NIGHT + timedelta(hours=1))
    # Then they are resend_after, not a second waiting batch the senders would refuse
    assert second == {1: "resend_after", 2: "resend_after", 3: "resend_after"}
    assert cast("FakeWaits", deps.waits).scheduled.keys() == {"waiting/promo_a@20261201T1300Z/20261201T2300Z.json"}


def test_a_pending_send_counts_against_the_caps_until_its_reservation_exists(deps: PlannerDependencies) -> None:
    # Given a one-a-day cap and a morning run that queued users 1-3 (not yet reserved by a sender)
    setup_hourly(deps, caps=[{"max": 1, "per": "day"}])
    assert set(plan_at(deps, T).values()) == {"queued"}
    other = make_campaign(id="promo_b", schedule={"rate": "1 hour", "timezone": "Asia/Seoul"})
    ruleset = RuleSet(
        campaigns=[make_campaign(id="promo_a", schedule=other.schedule, resend_after="7d"), other],
        policy=make_policy([{"max": 1, "per": "day"}]),
    )
    # When a different campaign plans the same users an hour later
    activate(deps.rules, ruleset)  # type: ignore[arg-type]
    snapshot(deps.data, make_features(3), {"@audience:promo_a": [], "@audience:promo_b": [1, 2, 3]}, ruleset.rules_hash)  # type: ignore[arg-type]
    deps.clock = lambda: T + timedelta(hours=1, seconds=20)
    plan_campaign("promo_b", T + timedelta(hours=1), deps)
    # Then the pending sends fill the day cap
    reasons = decisions(deps, "promo_b@20261201T0200Z").set_index("user_id")["reason"].to_dict()
    assert reasons == {1: "capped:day", 2: "capped:day", 3: "capped:day"}


def test_a_reserved_send_is_counted_once_and_leaves_the_ledger(deps: PlannerDependencies) -> None:
    # Given an hourly run that queued users 1-3 under a cap of two a day
    setup_hourly(deps, caps=[{"max": 2, "per": "day"}])
    plan_at(deps, T)
    ledger = read_pending(deps.data)
    assert len(ledger) == 3
    # And the senders reserved them (the cap table now holds the sends)
    usage = cast("FakeUsage", deps.usage)
    for row in ledger.itertuples():
        usage.states[int(row.user_id)] = UserCapState.empty(int(row.user_id)).with_send(
            send_id=row.send_id,
            channel="kakao_brand",
            topic="promo",
            campaign_id="promo_a",
            local_day=date(2026, 12, 1),
            sent_at=T,
        )
    # When the next hourly run comes, its users' answer is known from the ledger: no read at all
    usage.calls.clear()
    assert set(plan_at(deps, T + timedelta(hours=1)).values()) == {"resend_after"}
    assert usage.calls == []
    # And when another campaign reads the same users
    hourly = make_campaign(schedule={"rate": "1 hour", "timezone": "Asia/Seoul"}, resend_after="7d")
    other = make_campaign(id="promo_b", schedule=hourly.schedule, resend_after="3d")  # no entry of its own yet
    ruleset = RuleSet(campaigns=[hourly, other], policy=make_policy([{"max": 2, "per": "day"}]))
    activate(deps.rules, ruleset)  # type: ignore[arg-type]
    members = {"@audience:promo_a": [], "@audience:promo_b": [1, 2, 3]}
    snapshot(deps.data, make_features(3), members, ruleset.rules_hash)  # type: ignore[arg-type]
    deps.clock = lambda: T + timedelta(hours=2, seconds=20)
    plan_campaign("promo_b", T + timedelta(hours=2), deps)
    # Then each reserved send counts once (one of two a day: room left) and its entry is gone
    reasons = decisions(deps, "promo_b@20261201T0300Z").set_index("user_id")["reason"].to_dict()
    assert reasons == {1: "queued", 2: "queued", 3: "queued"}
    assert set(read_pending(deps.data)["campaign_id"]) == {"promo_b"}


def test_a_retried_run_does_not_refuse_its_own_sends(deps: PlannerDependencies) -> None:
    # Given a run that recorded its pending sends and then failed before finishing
    setup_hourly(deps)
    plan_at(deps, T)
    deps.runs.finish("promo_a@20261201T0100Z", now=T, status="failed", counts={}, error="crash")
    # When the Scheduler retry plans the same run again
    again = plan_at(deps, T)
    # Then its users are queued again with the same send ids (the senders make that harmless)
    assert set(again.values()) == {"queued"}
    assert len(read_pending(deps.data)) == 3
