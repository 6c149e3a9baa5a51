"""``funnelcast generate``: write realistic synthetic customers and events in the data contract (SPEC §1)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime


def _instant(text: str) -> datetime:
    """An ISO 8601 instant; naive means UTC (SPEC §1)."""
    import pandas as pd  # noqa: PLC0415 (CLI imports lazily)

    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from exc
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=_positive, required=True, help="number of customers")
    parser.add_argument("--events", type=_positive, required=True, help="exact number of events")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes (default 0)")
    parser.add_argument("--out", required=True, metavar="ROOT", help="data root: a directory or s3://bucket/prefix")
    parser.add_argument("--days", type=_positive, default=90, help="length of the event window in days (default 90)")
    parser.add_argument(
        "--end",
        type=_instant,
        default=None,
        metavar="ISO",
        help="last instant of the window (default 2026-12-01T00:00:00Z, fixed so output is reproducible)",
    )
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="file format")


def run(args: argparse.Namespace) -> int:
    """Generate, write ``customers/`` and ``events/dt=.../`` under ``--out`` and print a summary."""
    from funnelcast.data.generate import DEFAULT_END, generate, write_dataset  # noqa: PLC0415
    from funnelcast.storage import open_store  # noqa: PLC0415

    if args.users == 0:
        print("funnelcast generate: --users must be at least 1", file=sys.stderr)
        return 1
    if args.days == 0:
        print("funnelcast generate: --days must be at least 1", file=sys.stderr)
        return 1
    end = args.end if args.end is not None else DEFAULT_END
    started = time.perf_counter()
    customers, events = generate(args.users, args.events, seed=args.seed, end=end, days=args.days)
    generated = time.perf_counter()
    store = open_store(args.out)
    keys = write_dataset(store, customers, events, args.format)
    written = time.perf_counter()
    counts = events["event_type"].value_counts()
    mix = ", ".join(f"{name} {int(count):,}" for name, count in counts.items())
    print(
        f"wrote {len(customers):,} customers and {len(events):,} events ({mix}) "
        f"in {len(keys)} files under {store.uri()}"
    )
    print(
        f"window ({end.isoformat()} - {args.days}d, {end.isoformat()}]; "
        f"generated in {generated - started:.1f}s, written in {written - generated:.1f}s"
    )
    return 0
