"""``funnelcast segments``: compute segments locally (SPEC §4) and summarise them on the terminal.

Writes ``membership.parquet`` (``user_id``, ``segment_id``), ``features.parquet`` and
``manifest.json`` (counts per segment, entered/exited versus the previous run in the same
``--out``, quarantined rows, rules hash, timings) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any


def _instant(text: str) -> datetime:
    """An ISO 8601 instant; naive means UTC (SPEC §1)."""
    from datetime import UTC  # noqa: PLC0415

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", required=True, nargs="+", metavar="DIR", help="rule files or directories")
    parser.add_argument("--data", required=True, metavar="ROOT", help="data root: a directory or s3://bucket/prefix")
    parser.add_argument("--at", required=True, type=_instant, metavar="ISO", help="reference time T (naive = UTC)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="directory for membership.parquet and manifest.json"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no tables, only the last line")


def run(args: argparse.Namespace) -> int:
    """Load the rule set and the data it needs, evaluate at ``--at``, write ``--out``, print a summary."""
    import pandas as pd  # noqa: PLC0415 (CLI imports lazily)
    from rich.console import Console  # noqa: PLC0415

    from funnelcast.rules.ruleset import load_ruleset  # noqa: PLC0415
    from funnelcast.segments.engine import compute_segments  # noqa: PLC0415
    from funnelcast.segments.service import (  # noqa: PLC0415
        build_manifest,
        load_for_rules,
        reference_time,
        segments_run_id,
    )
    from funnelcast.segments.snapshot import entered_exited, frame_to_parquet  # noqa: PLC0415
    from funnelcast.storage import open_store  # noqa: PLC0415

    console = Console(stderr=False, highlight=False)
    report = load_ruleset(args.rules)
    ruleset = report.ruleset
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    at = reference_time(args.at)
    run_id = segments_run_id(at)
    data = open_store(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    dataset = _load_with_progress(console, ruleset, data, at, run_id, quiet=args.quiet, loader=load_for_rules)
    load_seconds = time.perf_counter() - started
    result = compute_segments(ruleset, dataset, at)
    previous_path = out / "membership.parquet"
    previous = pd.read_parquet(previous_path) if previous_path.exists() else None
    changes = entered_exited(result.membership, previous)
    manifest = build_manifest(
        ruleset, result, dataset=dataset, at=at, run_id=run_id, changes=changes, load_seconds=load_seconds
    )
    manifest["data_root"] = data.uri()
    manifest["quarantine_files"] = list(getattr(dataset, "quarantine_files", []))
    (out / "membership.parquet").write_bytes(frame_to_parquet(result.membership))
    (out / "features.parquet").write_bytes(frame_to_parquet(result.features))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    if not args.quiet:
        _print_summary(console, manifest, result.membership, [s.id for s in ruleset.segments])
    quarantined = sum(manifest["quarantined"].values())
    console.print(
        f"{manifest['customers']:,} customers, {len(result.counts)} segments at {at.isoformat()} "
        f"(rules {ruleset.rules_hash}) in {load_seconds:.1f}s load + {result.timings['total']:.1f}s compute; "
        f"{quarantined:,} rows quarantined; wrote {out / 'membership.parquet'} and {out / 'manifest.json'}",
        soft_wrap=True,
    )
    return 0


def _load_with_progress(
    console: Any, ruleset: Any, data: Any, at: datetime, run_id: str, *, quiet: bool, loader: Any
) -> Any:
    """Load through the data loader with a progress bar over the files it reads."""
    if quiet:
        return loader(ruleset, data, at, run_id)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    with Progress(
        TextColumn("loading data"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("load", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return loader(ruleset, data, at, run_id, progress)


def _print_summary(console: Any, manifest: dict[str, Any], membership: Any, segment_ids: list[str]) -> None:
    from rich.table import Table  # noqa: PLC0415

    from funnelcast.segments.summary import segment_overlaps  # noqa: PLC0415

    customers = max(int(manifest["customers"]), 1)
    table = Table(title=f"segments at {manifest['at']} (rules {manifest['rules_hash']})")
    for name, justify in (
        ("segment", "left"),
        ("members", "right"),
        ("share of customers", "right"),
        ("entered", "right"),
        ("exited", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=name == "segment")  # type: ignore[arg-type]
    for segment_id, size in manifest["counts"].items():
        change = manifest["changes"].get(segment_id, {"entered": 0, "exited": 0})
        table.add_row(
            segment_id,
            f"{size:,}",
            f"{100 * size / customers:.1f}%",
            f"+{change['entered']:,}",
            f"-{change['exited']:,}",
        )
    console.print(table)
    if len(segment_ids) > 1:
        shared = segment_overlaps(membership, segment_ids)
        overlap = Table(title="members in both segments (row ∩ column)")
        overlap.add_column("segment", no_wrap=True)
        for position, _ in enumerate(segment_ids):
            overlap.add_column(str(position + 1), justify="right")
        for position, segment_id in enumerate(segment_ids):
            cells = [
                "·" if row == position else (f"{value:,}" if value else "")
                for row, value in enumerate(shared.loc[segment_id].tolist())
            ]
            overlap.add_row(f"{position + 1} {segment_id}", *cells)
        console.print(overlap)
    if manifest["quarantined"]:
        quarantine = Table(title="quarantined rows")
        quarantine.add_column("reason")
        quarantine.add_column("rows", justify="right")
        for reason, rows in manifest["quarantined"].items():
            quarantine.add_row(reason, f"{rows:,}")
        console.print(quarantine)
