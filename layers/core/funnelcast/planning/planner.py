"""The campaign planner service: one scheduled firing in, decisions and queued send jobs out.

``plan_campaign(campaign_id, scheduled_at, deps)``:

1. Load the active rule set; the campaign must be in it (a stale schedule is reported, not run).
2. Find every campaign due at the same scheduled minute (the *slot*) and claim their run records
   (conditional puts): the first invocation of a slot plans all of them together in priority
   order; the others find their record taken and return ``noop``. A re-invoked planner is a no-op.
3. Load the latest segment snapshot (audience / exclude pseudo-segments and features), the
   suppression snapshot and the cap-table weeks of the users still pending (BatchGetItem of
   100 keys per request; one Scan above ``CapStore.batch_key_limit`` keys), plus the sends earlier
   runs handed over that no reservation holds yet (:mod:`funnelcast.planning.pending`).
4. Evaluate each campaign (:mod:`eligibility`), arbitrate caps and priority (:mod:`arbitration`).
5. Write ``runs/<run_id>/decisions.parquet``, the waiting batches ``waiting/<run_id>/<until>.json``
   with one-time schedules, enqueue the jobs due now (``SendMessageBatch`` of 10), then
   ``runs/<run_id>/summary.json`` and mark the run ``done``.

A missing snapshot marks the run ``failed`` (the next firing tries again); any other error marks it
``failed`` and propagates (the Scheduler retry may claim a failed run again; send ids are stable,
so the senders never send twice).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from funnelcast.caps.policy import UserCapState, weeks_between
from funnelcast.errors import FunnelcastError, ObjectNotFoundError, SnapshotMissingError
from funnelcast.ids import run_id as make_run_id
from funnelcast.jobs import SendJob
from funnelcast.planning.arbitration import arbitrate, priority_order
from funnelcast.planning.batches import PlannedJob, build_jobs
from funnelcast.planning.eligibility import PENDING, Evaluation, PlanContext, evaluate_audience, utc
from funnelcast.planning.pending import (
    read_pending,
    relevant_pending,
    updated_pending,
    with_pending,
    write_pending,
)
from funnelcast.planning.runs import RunLedger
from funnelcast.rules.models import Campaign, RuleSet
from funnelcast.storage import ObjectStore

SUPPRESSION_KEY = "suppression/latest.parquet"
DEFAULT_LEASE = timedelta(minutes=15)
DECISION_FIELDS = [
    "run_id",
    "campaign_id",
    "user_id",
    "variant_id",
    "outcome",
    "reason",
    "decided_at",
    "send_id",
    "channel",
]


class WaitingBatchError(FunnelcastError):
    """A waiting batch to release is missing or malformed."""


class UsageSource(Protocol):
    """The cap table's bulk read (``funnelcast.caps.store.CapStore.usage_of``)."""

    def usage_of(self, wanted: Mapping[Any, Collection[str]], *, threads: int = 1) -> Mapping[Any, UserCapState]: ...


class JobSender(Protocol):
    """``funnelcast.aws.queues.JobQueue``: batches of job bodies to a channel queue."""

    def send_jobs(self, channel: str, bodies: Sequence[str]) -> int: ...


class WaitScheduler(Protocol):
    """Creates the one-time schedule that releases a waiting batch at ``at`` (idempotent per key)."""

    def schedule_release(self, key: str, at: datetime) -> None: ...


SlotFinder = Callable[[RuleSet, Campaign, datetime], list[Campaign]]


def _snapshot_reader() -> Callable[[ObjectStore], Any]:
    from funnelcast.segments.snapshot import LatestSnapshotReader  # noqa: PLC0415

    return LatestSnapshotReader()


def campaigns_due_at(ruleset: RuleSet, campaign: Campaign, scheduled_at: datetime) -> list[Campaign]:
    """Every campaign of ``ruleset`` whose schedule fires at the same minute as ``scheduled_at``."""
    from funnelcast.scheduling import due_between  # noqa: PLC0415

    minute = scheduled_at.replace(second=0, microsecond=0)
    tz = ruleset.policy.default_timezone
    due = [c for c in ruleset.campaigns if due_between(c.schedule, tz, minute, minute + timedelta(minutes=1))]
    return due if any(c.id == campaign.id for c in due) else [campaign, *due]


@dataclass
class PlannerDependencies:
    """Stores, adapters and the clock of the planner; ``from_settings`` builds the AWS ones."""

    rules: ObjectStore
    data: ObjectStore
    usage: UsageSource
    runs: RunLedger
    queues: JobSender
    waits: WaitScheduler
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    slot_campaigns: SlotFinder = campaigns_due_at
    lease: timedelta = DEFAULT_LEASE
    read_threads: int = 1
    snapshots: Callable[[ObjectStore], Any] = field(default_factory=_snapshot_reader)
    log: Callable[[str, dict[str, Any]], None] = lambda message, extra: None

    @classmethod
    def from_settings(cls, settings: Any) -> PlannerDependencies:
        from funnelcast.planning.wiring import dependencies_from_settings  # noqa: PLC0415

        return dependencies_from_settings(settings)


class RunSummary(BaseModel):
    """What one run did; also ``runs/<run_id>/summary.json``."""

    model_config = ConfigDict(extra="forbid")
    run_id: str
    campaign_id: str
    scheduled_at: datetime
    status: str = Field(description="done | noop | failed | inactive")
    decided_at: datetime
    rules_hash: str = ""
    snapshot: dict[str, str] = Field(default_factory=dict)
    planned_with: list[str] = Field(default_factory=list, description="run ids of the slot planned together")
    audience: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)
    reasons: dict[str, int] = Field(default_factory=dict)
    variants: dict[str, int] = Field(default_factory=dict)
    channels: dict[str, int] = Field(default_factory=dict)
    timezone_defaulted: int = 0
    jobs_queued: int = 0
    waiting_batches: list[str] = Field(default_factory=list)
    sqs_requests: int = 0
    error: str = ""


class ReleaseSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    status: str = Field(description="released | noop")
    jobs: int = 0
    recipients: int = 0
    sqs_requests: int = 0


def audience_frame(snapshot: Any, campaign_id: str) -> pd.DataFrame:
    """Audience members with their features and an ``excluded`` flag, from the campaign pseudo-segments.

    Raises
    ------
    SnapshotMissingError
        When the snapshot was computed without this campaign (rules activated after the last recompute).
    """
    membership: pd.DataFrame = snapshot.membership
    audience_id, exclude_id = f"@audience:{campaign_id}", f"@exclude:{campaign_id}"
    segment = membership["segment_id"]
    # The engine keeps every evaluated (pseudo-)segment as a category, empty ones included.
    known = set(segment.cat.categories) if isinstance(segment.dtype, pd.CategoricalDtype) else set(segment.unique())
    known |= set(getattr(snapshot, "manifest", {}).get("counts", {}))
    if audience_id not in known:
        raise SnapshotMissingError(
            f"segment snapshot {snapshot.prefix} (rules {snapshot.rules_hash}) has no audience for campaign "
            f"{campaign_id!r}: recompute segments with the active rules"
        )
    members = membership.loc[(segment == audience_id).to_numpy(dtype=bool), "user_id"].drop_duplicates()
    excluded = set(membership.loc[(segment == exclude_id).to_numpy(dtype=bool), "user_id"].tolist())
    features: pd.DataFrame = snapshot.features
    frame = pd.DataFrame({"user_id": members.to_numpy()}).merge(features, on="user_id", how="left", sort=False)
    frame["excluded"] = frame["user_id"].isin(excluded)
    return frame.sort_values("user_id", kind="stable").reset_index(drop=True)


def read_suppression(store: ObjectStore) -> pd.DataFrame | None:
    """``suppression/latest.parquet`` in one read, ``None`` before feedback wrote any."""
    try:
        body = store.get_bytes(SUPPRESSION_KEY)
    except ObjectNotFoundError:
        return None
    return pd.read_parquet(io.BytesIO(body))


def decisions_frame(evaluation: Evaluation, decided_at: datetime) -> pd.DataFrame:
    """SPEC §4 ``decisions.parquet`` columns plus ``send_id`` and ``channel`` (DecisionRecord fields)."""
    frame = evaluation.frame
    handed = frame["outcome"].isin(["queued", "waiting"])
    return pd.DataFrame(
        {
            "run_id": evaluation.context.run_id,
            "campaign_id": evaluation.context.campaign.id,
            "user_id": frame["user_id"],
            "variant_id": frame["variant_id"],
            "outcome": frame["outcome"],
            "reason": frame["reason"],
            "decided_at": pd.Timestamp(decided_at),
            "send_id": frame["send_id"].where(handed, None),
            "channel": frame["channel"].where(handed, None),
        },
        columns=DECISION_FIELDS,
    )


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(key): int(value) for key, value in series.value_counts(dropna=True).sort_index().items()}


def _waiting_key(run: str, until: datetime) -> str:
    return f"waiting/{run}/{until.astimezone(UTC):%Y%m%dT%H%MZ}.json"


def _usage_keys(evaluations: Sequence[Evaluation], pending: pd.DataFrame) -> tuple[set[Any], dict[Any, set[str]]]:
    """The users still pending, and per user the cap-table weeks the arbitration must read.

    The weeks of the planned local days, and back from the earliest over the ``resend_after`` of
    each campaign planning the user (a day more: local days run up to a day behind UTC). A user
    whose pending send of the same campaign (``pending``, earlier runs) already refuses
    ``resend_after`` needs no read for that campaign: the answer is known.
    """
    users: set[Any] = set()
    wanted: dict[Any, set[str]] = {}
    for evaluation in evaluations:
        frame = evaluation.frame
        rows = frame.loc[(frame["outcome"] == PENDING).to_numpy(dtype=bool), ["user_id", "local_day", "not_before"]]
        if rows.empty:
            continue
        users.update(rows["user_id"].tolist())
        campaign = evaluation.context.campaign
        if campaign.resend_after is not None and not pending.empty:
            mine = pending[pending["campaign_id"] == campaign.id]
            last = {str(u): t for u, t in mine.groupby("user_id")["not_before"].max().items()}
            window = campaign.resend_after
            refused = [
                str(user) in last and last[str(user)] > opens - window
                for user, opens in zip(rows["user_id"].tolist(), rows["not_before"].tolist(), strict=True)
            ]
            rows = rows[~np.array(refused, dtype=bool)]
        back = (campaign.resend_after or timedelta(0)) + timedelta(days=1)
        for day, day_users in rows.groupby("local_day", sort=False)["user_id"]:
            weeks = weeks_between(day - back, day)
            for user in day_users.tolist():
                wanted.setdefault(user, set()).update(weeks)
    return users, wanted


def plan_campaign(campaign_id: str, scheduled_at: datetime, deps: PlannerDependencies) -> RunSummary:
    """Plan one scheduled firing of ``campaign_id`` (and every campaign due in the same minute)."""
    from funnelcast.activation import load_active_ruleset  # noqa: PLC0415

    scheduled = utc(scheduled_at).replace(second=0, microsecond=0)
    now = utc(deps.clock())
    own_run = make_run_id(campaign_id, scheduled)
    ruleset = load_active_ruleset(deps.rules)
    base = RunSummary(
        run_id=own_run,
        campaign_id=campaign_id,
        scheduled_at=scheduled,
        status="",
        decided_at=now,
        rules_hash=ruleset.rules_hash,
    )
    try:
        campaign = ruleset.campaign(campaign_id)
    except KeyError:
        error = f"campaign {campaign_id!r} is not in the active rule set {ruleset.rules_hash}; its schedule is stale"
        deps.log("campaign inactive", {"run_id": own_run})
        return base.model_copy(update={"status": "inactive", "error": error})
    if not deps.runs.claim(own_run, now=now, lease=deps.lease, leader=own_run):
        return base.model_copy(update={"status": "noop", "error": "run already planned or being planned"})
    claimed = [campaign]
    for other in priority_order(deps.slot_campaigns(ruleset, campaign, scheduled)):
        other_run = make_run_id(other.id, scheduled)
        if other.id != campaign.id and deps.runs.claim(other_run, now=now, lease=deps.lease, leader=own_run):
            claimed.append(other)
    claimed = priority_order(claimed)
    planned_with = [make_run_id(c.id, scheduled) for c in claimed]
    settled: set[str] = set()
    try:
        return _plan_slot(claimed, campaign, scheduled, now, ruleset, planned_with, deps, settled)
    except Exception as exc:
        for other in claimed:
            if other.id in settled:
                continue  # finished before the error: its record stands
            deps.runs.finish(
                make_run_id(other.id, scheduled),
                now=now,
                status="failed",
                counts={},
                error=f"{type(exc).__name__}: {exc}",
            )
        raise


def _plan_slot(  # noqa: PLR0917
    claimed: list[Campaign],
    campaign: Campaign,
    scheduled: datetime,
    now: datetime,
    ruleset: RuleSet,
    planned_with: list[str],
    deps: PlannerDependencies,
    settled: set[str],
) -> RunSummary:
    reference = max(scheduled, now)
    summaries: dict[str, RunSummary] = {}
    try:
        snapshot = deps.snapshots(deps.data)
    except SnapshotMissingError as exc:
        for other in claimed:
            summaries[other.id] = _failed(other, scheduled, now, ruleset, planned_with, str(exc), deps)
            settled.add(other.id)
        return summaries[campaign.id]
    snapshot_info = {"prefix": snapshot.prefix, "at": snapshot.at.isoformat(), "rules_hash": snapshot.rules_hash}
    suppression = read_suppression(deps.data)
    evaluations: list[Evaluation] = []
    audiences: dict[str, pd.DataFrame] = {}
    for other in claimed:
        run = make_run_id(other.id, scheduled)
        try:
            audience = audience_frame(snapshot, other.id)
        except SnapshotMissingError as exc:
            summaries[other.id] = _failed(other, scheduled, now, ruleset, planned_with, str(exc), deps)
            settled.add(other.id)
            continue
        context = PlanContext(other, ruleset.policy, run, reference)
        evaluations.append(evaluate_audience(context, audience, suppression))
        audiences[other.id] = audience
    if any((e.frame["outcome"] == PENDING).any() for e in evaluations):
        runs = {evaluation.context.run_id for evaluation in evaluations}
        pending = read_pending(deps.data)
        users, wanted = _usage_keys(evaluations, relevant_pending(pending, runs))
        stored = deps.usage.usage_of(wanted, threads=deps.read_threads) if wanted else {}
        arbitrate(ruleset.policy, evaluations, with_pending(stored, pending, users, runs))
        # Recorded before anything is enqueued: a crash in between only makes the next slot careful.
        write_pending(deps.data, updated_pending(pending, evaluations, stored, now))
    for evaluation in evaluations:
        summary = _finish(
            evaluation,
            audiences[evaluation.context.campaign.id],
            scheduled,
            now,
            ruleset,
            planned_with,
            snapshot_info,
            deps,
        )
        summaries[evaluation.context.campaign.id] = summary
        settled.add(evaluation.context.campaign.id)
    return summaries[campaign.id]


def _failed(  # noqa: PLR0917
    campaign: Campaign,
    scheduled: datetime,
    now: datetime,
    ruleset: RuleSet,
    planned_with: list[str],
    error: str,
    deps: PlannerDependencies,
) -> RunSummary:
    run = make_run_id(campaign.id, scheduled)
    deps.log("run failed", {"run_id": run, "error": error})
    deps.runs.finish(run, now=now, status="failed", counts={}, error=error)
    return RunSummary(
        run_id=run,
        campaign_id=campaign.id,
        scheduled_at=scheduled,
        status="failed",
        decided_at=now,
        rules_hash=ruleset.rules_hash,
        planned_with=planned_with,
        error=error,
    )


def _finish(  # noqa: PLR0917
    evaluation: Evaluation,
    audience: pd.DataFrame,
    scheduled: datetime,
    now: datetime,
    ruleset: RuleSet,
    planned_with: list[str],
    snapshot_info: dict[str, str],
    deps: PlannerDependencies,
) -> RunSummary:
    context = evaluation.context
    run = context.run_id
    frame = evaluation.frame
    decisions = decisions_frame(evaluation, now)
    buffer = io.BytesIO()
    decisions.to_parquet(buffer, index=False)
    deps.data.put_bytes(f"runs/{run}/decisions.parquet", buffer.getvalue())
    jobs = build_jobs(context, frame, audience, ruleset.rules_hash, scheduled)
    waiting: dict[str, list[PlannedJob]] = {}
    now_jobs: dict[str, list[str]] = {}
    for planned in jobs:
        if planned.release_at is None:
            now_jobs.setdefault(planned.channel, []).append(planned.body)
        else:
            waiting.setdefault(_waiting_key(run, planned.release_at), []).append(planned)
    # Waiting batches are stored and scheduled before anything is enqueued: a crash leaves
    # nothing half-released, and a retry rewrites the same keys and finds the schedules existing.
    for key, batch in sorted(waiting.items()):
        release_at = batch[0].release_at
        assert release_at is not None
        body = {
            "run_id": run,
            "campaign_id": context.campaign.id,
            "release_at": release_at.isoformat(),
            "jobs": [json.loads(p.body) for p in batch],
        }
        deps.data.put_bytes(key, json.dumps(body, ensure_ascii=False).encode())
        deps.waits.schedule_release(key, release_at)
    requests = 0
    for channel, bodies in sorted(now_jobs.items()):
        requests += deps.queues.send_jobs(channel, bodies)
    handed = frame["outcome"].isin(["queued", "waiting"])
    summary = RunSummary(
        run_id=run,
        campaign_id=context.campaign.id,
        scheduled_at=scheduled,
        status="done",
        decided_at=now,
        rules_hash=ruleset.rules_hash,
        snapshot=snapshot_info,
        planned_with=planned_with,
        audience=len(frame),
        outcomes=_counts(frame["outcome"]),
        reasons=_counts(frame["reason"].where(~frame["outcome"].isin(["waiting"]), "waiting")),
        variants=_counts(frame["variant_id"]),
        channels=_counts(frame["channel"].where(handed, None)),
        timezone_defaulted=evaluation.counts.get("timezone_defaulted", 0),
        jobs_queued=sum(len(b) for b in now_jobs.values()),
        waiting_batches=sorted(waiting),
        sqs_requests=requests,
    )
    deps.data.put_bytes(f"runs/{run}/summary.json", summary.model_dump_json(indent=1).encode())
    deps.runs.finish(run, now=now, status="done", counts=summary.outcomes)
    deps.log("run planned", {"run_id": run, "outcomes": summary.outcomes, "sqs_requests": requests})
    return summary


def release_waiting(key: str, deps: PlannerDependencies) -> ReleaseSummary:
    """Enqueue the jobs of a waiting batch (fired by its one-time schedule); a second release is a no-op.

    Enqueue first, record after: a crash in between re-enqueues on the retry, which the senders'
    per-send-id state makes harmless; recording first could lose the batch.
    """
    if not key.startswith("waiting/") or not key.endswith(".json"):
        raise WaitingBatchError(f"{key!r} is not a waiting batch key (waiting/<run_id>/<until>.json)")
    if deps.runs.released(key):
        return ReleaseSummary(key=key, status="noop")
    try:
        body = json.loads(deps.data.get_bytes(key))
        jobs = [SendJob.model_validate(job) for job in body["jobs"]]
    except ObjectNotFoundError as exc:
        raise WaitingBatchError(f"waiting batch {deps.data.uri(key)} does not exist") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise WaitingBatchError(f"waiting batch {deps.data.uri(key)} is malformed: {exc}") from exc
    by_channel: dict[str, list[str]] = {}
    for job in jobs:
        by_channel.setdefault(job.channel.value, []).append(job.model_dump_json())
    requests = sum(deps.queues.send_jobs(channel, bodies) for channel, bodies in sorted(by_channel.items()))
    deps.runs.mark_released(key, now=utc(deps.clock()), jobs=len(jobs))
    recipients = sum(len(job.recipients) for job in jobs)
    deps.log("waiting batch released", {"key": key, "jobs": len(jobs), "recipients": recipients})
    return ReleaseSummary(key=key, status="released", jobs=len(jobs), recipients=recipients, sqs_requests=requests)
