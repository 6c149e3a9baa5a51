"""``funnelcast demo``: the whole pipeline on embedded moto over simulated days, with a summary table."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=5_000, help="synthetic customers (default 5000)")
    parser.add_argument("--days", type=int, default=7, help="simulated days to run (default 7)")
    parser.add_argument("--history-days", type=int, default=30, help="days of event history before the start")
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of data, reactions and faults")
    parser.add_argument(
        "--server", action="store_true", help="run moto as a server on 127.0.0.1 (the AWS CLI can look at it)"
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="inject faults: 10%% provider errors, 5%% worker crashes, duplicate deliveries, a poison message",
    )
    parser.add_argument("--tick-minutes", type=int, default=15, help="simulated minutes per tick (default 15)")


class RichProgress:
    """A bar per simulated day, and messages above the bars."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

        self.console = console
        self.bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def message(self, text: str) -> None:
        self.bars.console.print(text)

    def day_started(self, index: int, label: str, ticks: int) -> None:
        self._task = self.bars.add_task(f"day {index + 1} {label}", total=ticks, note="")

    def ticked(self) -> None:
        if self._task is not None:
            self.bars.advance(self._task)

    def day_finished(self, summary: str) -> None:
        if self._task is not None:
            self.bars.update(self._task, note=summary.split(": ", 1)[-1])


def _cell(value: Any, style: str = "") -> str:
    """``style``: "" (plain), "percent" (rates) or "points" (a lift in percentage points)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if style == "points":
            return f"{value * 100:+.1f}pp"
        return f"{value * 100:.1f}%" if style == "percent" else f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_result(console: Any, result: Any) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="campaigns (whole run)")
    for column in ["campaign", "audience", "sent", "capped", "waited", "suppressed", "holdout", "CTR", "CVR", "lift"]:
        table.add_column(column, justify="left" if column == "campaign" else "right")
    for row in result.summary.to_dict("records"):
        table.add_row(
            str(row["campaign_id"]),
            *[_cell(int(row[c])) for c in ("audience", "sent", "capped", "waited", "suppressed", "holdout")],
            _cell(float(row["ctr"]), "percent"),
            _cell(float(row["cvr"]), "percent"),
            _cell(float(row["lift"]), "points"),
        )
    console.print(table)
    for stage, status in sorted(result.stages.items()):
        if status != "ok":
            console.print(f"[yellow]{stage}: {status}[/yellow]")
    for error in result.errors[:10]:
        console.print(f"[red]error:[/red] {error}")
    if len(result.errors) > 10:
        console.print(f"[red]... {len(result.errors) - 10} more errors in summary.json[/red]")
    requests = result.aws_requests
    pipeline = requests.get("pipeline", {})
    per_k = pipeline.get("per_1000_delivered")
    console.print(
        f"AWS requests of the pipeline: {pipeline.get('total', 0):,}"
        + (f" ({per_k:,.0f} per 1,000 delivered)" if per_k is not None else "")
        + f"; simulator (Scheduler, event source mappings, exports): {requests.get('simulator', {}).get('total', 0):,}"
    )
    top = sorted(
        ((s, d["total"]) for s, d in pipeline.get("services", {}).items()), key=lambda item: item[1], reverse=True
    )
    if top:
        console.print("  by service: " + ", ".join(f"{service} {count:,}" for service, count in top))
    if result.dead_letters:
        console.print(f"dead-lettered messages: {len(result.dead_letters)} (reasons in dlq.json)")
    timings = result.timings
    console.print(
        f"wall time {timings.get('total', 0):.1f}s (simulation {timings.get('simulation', 0):.1f}s); "
        f"files in {result.out}: " + ", ".join(sorted(p.name for p in result.files.values()))
    )


def run(args: argparse.Namespace) -> int:
    from datetime import timedelta  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from funnelcast.demo.runner import DemoConfig, DemoRun, Faults, check_config  # noqa: PLC0415
    from funnelcast.errors import FunnelcastError  # noqa: PLC0415

    # Piped output (CI logs, `| tee`) would otherwise be cut at 80 columns and truncate the table.
    console = Console(width=None if sys.stdout.isatty() else 140)
    config = DemoConfig(
        users=args.users,
        days=args.days,
        history_days=args.history_days,
        seed=args.seed,
        out=Path(args.out),
        server=args.server,
        faults=Faults() if args.faults else None,
        tick=timedelta(minutes=args.tick_minutes),
    )
    try:
        check_config(config)
        with RichProgress(console) as progress:
            result = DemoRun(config, progress).run()
    except FunnelcastError as exc:
        print(f"funnelcast demo: {exc}", file=sys.stderr)
        return 1
    print_result(console, result)
    return 0
