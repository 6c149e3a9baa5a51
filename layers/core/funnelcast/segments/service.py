"""Recompute segments: load data, evaluate, write a versioned snapshot (used by Lambda and CLI)."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from typing import Any

from funnelcast.rules.models import RuleSet
from funnelcast.segments.engine import SegmentResult, compute_segments
from funnelcast.segments.plan import data_needs
from funnelcast.segments.snapshot import entered_exited, load_latest_membership, write_snapshot
from funnelcast.settings import Settings
from funnelcast.storage import ObjectStore, open_store

Progress = Callable[[int, int], None]


@dataclass
class RecomputeOutcome:
    """What a recompute run produced."""

    result: SegmentResult
    manifest: dict[str, Any]
    prefix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def peak_memory_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def load_for_rules(
    ruleset: RuleSet, data_store: ObjectStore, at: datetime, run_id: str, progress: Progress | None = None
) -> Any:
    """Load exactly what ``ruleset`` needs through the data loader (``funnelcast.data.load``)."""
    # Imported by name: the loader is another module of the package, kept out of import time so
    # the engine stays importable (and testable) on its own.
    loader = import_module("funnelcast.data.load")
    return loader.load_dataset(data_store, data_needs(ruleset, at), run_id=run_id, progress=progress)


def build_manifest(
    ruleset: RuleSet,
    result: SegmentResult,
    *,
    dataset: Any,
    at: datetime,
    run_id: str,
    changes: dict[str, dict[str, int]],
    load_seconds: float,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "at": at.astimezone(UTC).isoformat(),
        "rules_hash": ruleset.rules_hash,
        "customers": len(result.features),
        "counts": result.counts,
        "changes": changes,
        "quarantined": dict(getattr(dataset, "quarantined", {})),
        "duplicates_dropped": int(getattr(dataset, "duplicates_dropped", 0)),
        "files_read": len(getattr(dataset, "files_read", [])),
        "bytes_read": int(getattr(dataset, "bytes_read", 0)),
        "events_of_unknown_users": result.unknown_user_events,
        "timings": {
            "load": load_seconds,
            **{f"load_{step}": seconds for step, seconds in dict(getattr(dataset, "timings", {})).items()},
            **result.timings,
        },
        "peak_memory_bytes": peak_memory_bytes(),
    }


def recompute(
    ruleset: RuleSet,
    data_store: ObjectStore,
    out_store: ObjectStore,
    at: datetime,
    run_id: str,
    *,
    progress: Progress | None = None,
    dataset: Any = None,
) -> RecomputeOutcome:
    """Load the data ``ruleset`` needs at ``at``, evaluate, and write the snapshot to ``out_store``.

    ``data_store`` is the data root (``customers/``, ``events/``); ``out_store`` is the data bucket
    root where ``segments/`` lives. ``latest.json`` moves only after every snapshot file is written.
    """
    started = time.perf_counter()
    if dataset is None:
        dataset = load_for_rules(ruleset, data_store, at, run_id, progress)
    load_seconds = time.perf_counter() - started
    result = compute_segments(ruleset, dataset, at)
    changes = entered_exited(result.membership, load_latest_membership(out_store))
    manifest = build_manifest(
        ruleset,
        result,
        dataset=dataset,
        at=at,
        run_id=run_id,
        changes=changes,
        load_seconds=load_seconds,
    )
    prefix = write_snapshot(
        out_store,
        membership=result.membership,
        features=result.features,
        at=at,
        rules_hash=ruleset.rules_hash,
        manifest=manifest,
    )
    return RecomputeOutcome(result=result, manifest=manifest, prefix=prefix)


def segments_run_id(at: datetime) -> str:
    """``segments@20261201T0100Z``: one recompute per reference minute (UTC)."""
    return f"segments@{at.astimezone(UTC).strftime('%Y%m%dT%H%MZ')}"


def reference_time(moment: datetime) -> datetime:
    """``moment`` in UTC truncated to the minute (snapshots are named per minute); naive = UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass
class RecomputeDependencies:
    """Where a scheduled recompute reads rules and data and writes its snapshot, and its clock.

    ``rules_store`` is the rules bucket (``active.json``), ``data_store`` the data root
    (``customers/``, ``events/``: ``s3://DATA_BUCKET/DATA_PREFIX``), ``out_store`` the data bucket
    root where ``segments/`` lives.
    """

    rules_store: ObjectStore
    data_store: ObjectStore
    out_store: ObjectStore
    clock: Callable[[], datetime]

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], datetime] | None = None) -> RecomputeDependencies:
        settings.require("rules_bucket", "data_bucket")
        return cls(
            rules_store=open_store(f"s3://{settings.rules_bucket}"),
            data_store=open_store(f"s3://{settings.data_bucket}/{settings.data_prefix}"),
            out_store=open_store(f"s3://{settings.data_bucket}"),
            clock=clock if clock is not None else (lambda: datetime.now(UTC)),
        )


def recompute_active(
    deps: RecomputeDependencies, at: datetime | None = None, *, progress: Progress | None = None
) -> RecomputeOutcome:
    """Recompute the active rule set at ``at`` (default: the clock's minute) and publish the snapshot.

    Raises
    ------
    RuleError
        When no rule set was activated yet.
    DataContractError
        When an input file is unreadable or lacks a required column (the old snapshot stays current).
    """
    from funnelcast.activation import load_active_ruleset  # noqa: PLC0415 (rules code only when run)

    moment = reference_time(at if at is not None else deps.clock())
    ruleset = load_active_ruleset(deps.rules_store)
    return recompute(ruleset, deps.data_store, deps.out_store, moment, segments_run_id(moment), progress=progress)
