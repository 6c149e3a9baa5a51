"""Read a run directory and produce KPIs, the daily outcome table and the HTML page.

What ``funnelcast report RUN_DIR`` reads (the demo writes these; extra columns are ignored):

=====================  ========  ==========================================================================
file                   needed?   columns
=====================  ========  ==========================================================================
``decisions.parquet``  required  ``campaign_id, user_id, variant_id, outcome, decided_at, channel`` (DecisionRecord
                                 rows; ``outcome`` either the planner's ``queued``/``waiting``/... or the final
                                 SPEC outcome ``sent``/``failed``/...: both work; ``holdout`` rows have
                                 ``variant_id`` and ``channel`` null; ``decided_at`` UTC timestamp)
``deliveries.parquet`` required  ``send_id, campaign_id, user_id, variant_id, channel, status, sent_at``
                                 (DeliveryRecord rows; ``status`` ``sent``/``failed``/...; ``sent_at`` UTC)
``feedback.parquet``   optional  ``event_id, send_id, type, ts, channel`` (``funnelcast.feedback.ingest.read_events``
                                 of the data root: de-duplicated, implied deliveries added). Without it delivered,
                                 opened and clicked are 0.
``events.parquet``     optional  ``user_id, ts`` and ``event_type`` (SPEC §1; ``event`` accepted too), ``amount``
                                 optional: the customers' own events, conversions are ``--event`` (purchase)
                                 within ``--window`` (7d). Without it converted/lift are 0/NaN.
=====================  ========  ==========================================================================

``user_id`` may be int or text in any file (compared as text). Written: ``RUN_DIR/kpis.parquet`` and, with
``--html FILE``, the page. ``--rules PATH...`` adds funnel stages and audience segments per campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from funnelcast.errors import DataContractError
from funnelcast.reporting.html import daily_outcomes, render_report
from funnelcast.reporting.kpis import compute_kpis

REQUIRED = {
    "decisions.parquet": ["campaign_id", "user_id", "variant_id", "outcome", "decided_at", "channel"],
    "deliveries.parquet": ["send_id", "campaign_id", "user_id", "variant_id", "channel", "status", "sent_at"],
}
OPTIONAL = {
    # feedback.parquet: normalised feedback events (funnelcast.feedback.normalize.FeedbackEvent columns)
    "feedback.parquet": ["event_id", "send_id", "type", "ts", "channel"],
    # events.parquet: the customers' own events (SPEC §1), conversions are read from here
    "events.parquet": ["user_id", "ts"],
}


@dataclass
class Report:
    kpis: pd.DataFrame
    daily: pd.DataFrame
    html: str


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataContractError(f"{path}: cannot read parquet: {exc}") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataContractError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def build_report(
    run_dir: Path,
    *,
    funnel_stages: dict[str, str] | None = None,
    segments: dict[str, str] | None = None,
    conversion_event: str = "purchase",
    window: timedelta = timedelta(days=7),
) -> Report:
    """KPIs, daily outcomes and the HTML of ``run_dir`` (files in the module docstring)."""
    if not run_dir.is_dir():
        raise DataContractError(f"{run_dir}: not a directory")
    frames: dict[str, pd.DataFrame] = {}
    for name, columns in REQUIRED.items():
        if not (run_dir / name).exists():
            raise DataContractError(f"{run_dir / name}: required file is missing")
        frames[name] = _read(run_dir / name, columns)
    for name, columns in OPTIONAL.items():
        path = run_dir / name
        frames[name] = _read(path, columns) if path.exists() else pd.DataFrame(columns=columns)
    events = frames["events.parquet"]
    if len(events) and "event_type" not in events and "event" not in events:
        raise DataContractError(f"{run_dir / 'events.parquet'}: missing column event_type")
    kpis = compute_kpis(
        frames["decisions.parquet"],
        frames["deliveries.parquet"],
        frames["feedback.parquet"],
        frames["events.parquet"],
        funnel_stages=funnel_stages,
        segments=segments,
        conversion_event=conversion_event,
        window=window,
    )
    daily = daily_outcomes(frames["decisions.parquet"], frames["deliveries.parquet"])
    return Report(kpis, daily, render_report(kpis, daily, title=f"funnelcast 캠페인 리포트 — {run_dir.name}"))
