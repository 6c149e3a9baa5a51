"""The scheduled report: KPIs and the HTML page from the data bucket's own records.

Reads (data bucket, over the last ``days`` days before ``now``):

* ``runs/<campaign>@<YYYYmmddTHHMMZ>/decisions.parquet`` (planner), runs scheduled in the window;
* ``deliveries/dt=<day>/*.jsonl`` (senders) and ``feedback/events/dt=<day>/*.jsonl`` (feedback);
* the customers' events under ``DATA_PREFIX`` (``events/**``), only the conversion event
  (``policy.rfm.event``, amount ``policy.rfm.amount_field``), through :func:`funnelcast.data.load.load_dataset`;
* the active rule set (rules bucket) for funnel stages, audiences and the suppression policy.

Writes ``reports/<now:%Y-%m-%d>/kpis.parquet`` and ``report.html``, and rebuilds
``suppression/latest.parquet`` (the daily pass that moves ``suppression.ignored``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from funnelcast.storage import ObjectStore

if TYPE_CHECKING:
    from funnelcast.rules.models import RuleSet
    from funnelcast.settings import Settings

DECISION_COLUMNS = [
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
_RUN_KEY = re.compile(r"^runs/(?P<campaign>[^/@]+)@(?P<at>\d{8}T\d{4}Z)/decisions\.parquet$")


@dataclass
class ReportDependencies:
    data: ObjectStore
    rules: ObjectStore
    data_prefix: str = "input/"
    log: Callable[[str, dict[str, Any]], None] = lambda message, extra: None

    @classmethod
    def from_settings(cls, settings: Settings) -> ReportDependencies:
        from funnelcast.storage import S3Store  # noqa: PLC0415

        settings.require("data_bucket", "rules_bucket")
        return cls(S3Store(settings.data_bucket), S3Store(settings.rules_bucket), settings.data_prefix)


@dataclass
class ScheduledReport:
    kpis: pd.DataFrame
    html: str
    keys: list[str]
    counts: dict[str, int]


def read_decisions(store: ObjectStore, since: datetime, until: datetime) -> pd.DataFrame:
    """Decisions of every run scheduled in ``[since, until]`` (the run id carries its minute)."""
    frames = []
    for key in store.list_keys("runs/"):
        match = _RUN_KEY.match(key)
        if match is None:
            continue
        at = datetime.strptime(match["at"], "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
        if since <= at <= until:
            frames.append(pd.read_parquet(io.BytesIO(store.get_bytes(key))))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def read_conversions(
    store: ObjectStore, event: str, amount_field: str, *, since: datetime, until: datetime, run_id: str
) -> pd.DataFrame:
    """The customers' ``event`` rows in ``(since, until]`` (``user_id, event_type, ts, amount``)."""
    from funnelcast.data.load import load_dataset  # noqa: PLC0415
    from funnelcast.segments.plan import DataNeeds  # noqa: PLC0415

    needs = DataNeeds(
        event_types=frozenset({event}),
        event_columns=frozenset({amount_field}),
        customer_columns=frozenset(),
        earliest=since,
        until=until,
    )
    events = load_dataset(store, needs, run_id=run_id).events
    keep = [c for c in ("user_id", "event_type", "ts", amount_field) if c in events]
    frame = events[keep].rename(columns={amount_field: "amount"})
    frame["event_type"] = frame["event_type"].astype(str)
    return frame


def campaign_audiences(ruleset: RuleSet) -> dict[str, str]:
    """Campaign id -> the segment its audience names (``segment: X``), else ``(rule)``."""
    audiences = {}
    for campaign in ruleset.campaigns:
        segment = getattr(campaign.audience, "segment", None)
        audiences[campaign.id] = str(segment) if isinstance(segment, str) else "(rule)"
    return audiences


def build_scheduled_report(deps: ReportDependencies, *, now: datetime, days: int = 30) -> ScheduledReport:
    """KPIs over the last ``days`` days, written under ``reports/<day>/``; suppression rebuilt."""
    from funnelcast.activation import load_active_ruleset  # noqa: PLC0415
    from funnelcast.feedback.ingest import read_deliveries, read_events, resolve_provider_ids  # noqa: PLC0415
    from funnelcast.feedback.suppression import rebuild_suppression  # noqa: PLC0415
    from funnelcast.reporting.html import daily_outcomes, render_report  # noqa: PLC0415
    from funnelcast.reporting.kpis import compute_kpis  # noqa: PLC0415

    ruleset = load_active_ruleset(deps.rules)
    policy = ruleset.policy
    since = now - timedelta(days=days)
    decisions = read_decisions(deps.data, since, now)
    deliveries = read_deliveries(deps.data, since.date())
    feedback = resolve_provider_ids(read_events(deps.data, since.date()), deliveries)
    conversions = read_conversions(
        deps.data.child(deps.data_prefix),
        policy.rfm.event,
        policy.rfm.amount_field,
        # Earlier purchases too (RFM look-back): re-purchase needs to know who had bought before a run.
        since=since - policy.rfm.lookback,
        until=now,
        run_id=f"report-{now:%Y%m%dT%H%MZ}",
    )
    stages = {c.id: c.funnel_stage.value for c in ruleset.campaigns}
    kpis = compute_kpis(
        decisions,
        deliveries,
        feedback,
        conversions,
        funnel_stages=stages,
        segments=campaign_audiences(ruleset),
        conversion_event=policy.rfm.event,
    )
    daily = daily_outcomes(decisions, deliveries)
    title = f"funnelcast 캠페인 리포트 — {since:%Y-%m-%d} ~ {now:%Y-%m-%d}"
    html = render_report(kpis, daily, title=title)
    prefix = f"reports/{now:%Y-%m-%d}/"
    buffer = io.BytesIO()
    kpis.to_parquet(buffer, index=False)
    deps.data.put_bytes(f"{prefix}kpis.parquet", buffer.getvalue())
    deps.data.put_bytes(f"{prefix}report.html", html.encode())
    suppression, unknown = rebuild_suppression(deps.data, policy.suppression, now=now)
    counts = {
        "decisions": len(decisions),
        "deliveries": len(deliveries),
        "feedback_events": len(feedback),
        "conversion_events": len(conversions),
        "kpi_rows": len(kpis),
        "suppression_rows": len(suppression),
        "unknown_send_ids": unknown,
    }
    deps.log("report written", {"prefix": prefix, **counts})
    return ScheduledReport(kpis, html, [f"{prefix}kpis.parquet", f"{prefix}report.html"], counts)
