"""``funnelcast report RUN_DIR [--html FILE] [--rules PATH]``: KPIs table, kpis.parquet and an HTML report."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="holds deliveries.parquet and decisions.parquet")
    parser.add_argument("--html", metavar="FILE", help="write the self-contained HTML report here")
    parser.add_argument("--rules", metavar="PATH", nargs="*", default=[], help="rule files (funnel stages)")
    parser.add_argument("--window", default="7d", help="attribution window (default 7d)")
    parser.add_argument("--event", default="purchase", help="conversion event name (default purchase)")


def run(args: argparse.Namespace) -> int:
    """Exit 0 after writing ``RUN_DIR/kpis.parquet`` (and the HTML), 1 with a clear message otherwise."""
    from rich.console import Console  # noqa: PLC0415 (CLI imports lazily)
    from rich.table import Table  # noqa: PLC0415

    from funnelcast.errors import FunnelcastError  # noqa: PLC0415
    from funnelcast.reporting.run_dir import build_report  # noqa: PLC0415
    from funnelcast.rules.durations import parse_duration  # noqa: PLC0415

    try:
        stages: dict[str, str] = {}
        segments: dict[str, str] = {}
        if args.rules:
            from funnelcast.rules.ruleset import load_ruleset  # noqa: PLC0415

            ruleset = load_ruleset(args.rules).ruleset
            stages = {c.id: c.funnel_stage.value for c in ruleset.campaigns}
            from funnelcast.reporting.scheduled import campaign_audiences  # noqa: PLC0415

            segments = campaign_audiences(ruleset)
        run_dir = Path(args.run_dir)
        report = build_report(
            run_dir,
            funnel_stages=stages,
            segments=segments,
            conversion_event=args.event,
            window=parse_duration(args.window),
        )
        report.kpis.to_parquet(run_dir / "kpis.parquet", index=False)
        if args.html:
            Path(args.html).write_text(report.html, encoding="utf-8")
    except (FunnelcastError, ValueError) as exc:
        print(f"funnelcast report: {exc}", file=sys.stderr)
        return 1
    table = Table(title=f"KPIs — {run_dir}")
    for column in [
        "campaign",
        "variant",
        "channel",
        "audience",
        "holdout",
        "sent",
        "delivered",
        "opened",
        "clicked",
        "converted",
        "CTR",
        "CVR",
        "lift [95% CI]",
        "p",
    ]:
        table.add_column(
            column, justify="left" if column in {"campaign", "variant", "channel"} else "right", overflow="fold"
        )
    for row in report.kpis.to_dict("records"):
        table.add_row(*_terminal_row(row))
    Console().print(table)
    print(f"wrote {run_dir / 'kpis.parquet'}" + (f" and {args.html}" if args.html else ""))
    return 0


def _percent(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) and math.isfinite(value) else ""


def _terminal_row(row: dict[str, object]) -> list[str]:
    """One KPI row for the terminal: counts, rates in %, lift in percentage points with its interval."""
    lift, low, high, p_value = (row.get(k) for k in ("lift", "lift_ci_low", "lift_ci_high", "p_value"))
    lift_text = ""
    if isinstance(lift, float) and math.isfinite(lift) and isinstance(low, float) and isinstance(high, float):
        lift_text = f"{lift * 100:+.1f}%p [{low * 100:+.1f}, {high * 100:+.1f}]"
    p_text = f"{p_value:.3f}" if isinstance(p_value, float) and math.isfinite(p_value) else ""
    names = ("audience", "holdout", "sent", "delivered", "opened", "clicked", "converted")
    counts = [f"{int(str(row[c])):,}" for c in names]
    variant = "holdout" if row["variant_id"] == "(none)" else str(row["variant_id"])
    return [
        str(row["campaign_id"]),
        variant,
        str(row["channel"]),
        *counts,
        _percent(row.get("ctr")),
        _percent(row.get("cvr")),
        lift_text,
        p_text,
    ]
