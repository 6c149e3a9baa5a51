"""The demo's files in ``--out`` and the per-campaign summary.

* ``deliveries.parquet``: every delivery record the senders wrote (SPEC §4 columns, plus reason,
  fallback_from, provider_message_id, rules_hash); ``local_sent_at`` is the user's wall-clock time.
* ``decisions.parquet``: every planner decision with its final SPEC outcome: a queued/waiting user
  takes the delivery status of its ``send_id`` (``planned_outcome`` / ``planned_reason`` keep what
  the planner said); a send whose job ended in a DLQ is ``failed`` with ``dlq:<reason>``.
* ``outbox.parquet``: what the fake providers accepted (channel, send_id, user_id, campaign_id,
  body, purpose, sent_at) - the customer's view, used by the e2e tests.
* ``kpis.parquet``, ``report.html``: :mod:`funnelcast.reporting` over this folder.
* ``aws_requests.json``: AWS requests per caller, service and operation, per 1,000 delivered.
* ``customers.parquet``, ``events.parquet``, ``feedback.parquet``, ``dlq.json``, ``summary.json``,
  ``log.jsonl``: what the report and the e2e tests read besides.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from funnelcast.demo.runner import DemoRun

SUMMARY_COLUMNS = ["campaign_id", "audience", "sent", "capped", "waited", "suppressed", "holdout", "ctr", "cvr", "lift"]


@dataclass
class DemoResult:
    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    summary: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUMMARY_COLUMNS))
    aws_requests: dict[str, Any] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None


def _parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def _local_wall_clock(values: pd.Series) -> pd.Series:
    """ISO strings with offsets -> naive wall-clock timestamps of those offsets."""
    return pd.Series(
        [datetime.fromisoformat(str(v)).replace(tzinfo=None) if isinstance(v, str) and v else pd.NaT for v in values],
        index=values.index,
        dtype="datetime64[us]",
    )


def read_deliveries(run: DemoRun) -> pd.DataFrame:
    from funnelcast.feedback.ingest import read_deliveries as read  # noqa: PLC0415

    frame = read(run.data_root)
    if frame.empty:
        return frame
    frame["local_sent_at"] = _local_wall_clock(frame["local_sent_at"])
    for column in ("reason", "fallback_from", "provider_message_id", "rules_hash", "topic"):
        if column not in frame:
            frame[column] = None
    return frame.sort_values(["sent_at", "send_id"], kind="stable").reset_index(drop=True)


def read_decisions(run: DemoRun) -> pd.DataFrame:
    keys = [k for k in run.data_root.list_keys("runs/") if k.endswith("/decisions.parquet")]
    frames = [pd.read_parquet(io.BytesIO(run.data_root.get_bytes(key))) for key in keys]
    frames = [f for f in frames if len(f)]
    if not frames:
        columns = ["run_id", "campaign_id", "user_id", "variant_id", "outcome", "reason", "decided_at", "send_id"]
        return pd.DataFrame(columns=[*columns, "channel"])
    return pd.concat(frames, ignore_index=True)


def dlq_send_ids(letters: list[dict[str, Any]]) -> dict[str, str]:
    """send_id -> DLQ reason for every recipient of a dead-lettered job (poison bodies have none)."""
    from funnelcast.jobs import SendJob  # noqa: PLC0415

    result: dict[str, str] = {}
    for letter in letters:
        try:
            job = SendJob.model_validate_json(letter["body"])
        except ValueError:
            continue
        for recipient in job.recipients:
            result[recipient.send_id] = str(letter["reason"])
    return result


def final_decisions(decisions: pd.DataFrame, deliveries: pd.DataFrame, dead: dict[str, str]) -> pd.DataFrame:
    """Planner decisions merged with the delivery status of their send ids (SPEC §3 outcomes)."""
    frame = decisions.copy()
    frame["planned_outcome"] = frame["outcome"].astype(str)
    frame["planned_reason"] = frame["reason"].astype(str)
    if len(deliveries):
        final = deliveries.sort_values("sent_at", kind="stable").drop_duplicates("send_id", keep="last")
        by_send = final.set_index("send_id")
        status = frame["send_id"].map(by_send["status"])
        reason = frame["send_id"].map(by_send["reason"])
        channel = frame["send_id"].map(by_send["channel"])
    else:
        status = reason = channel = pd.Series(None, index=frame.index, dtype=object)
    handed = frame["planned_outcome"].isin(["queued", "waiting"])
    delivered = handed & status.notna()
    frame.loc[delivered, "outcome"] = status[delivered]
    frame.loc[delivered, "reason"] = reason[delivered].where(reason[delivered].astype(bool), status[delivered])
    frame.loc[delivered, "channel"] = channel[delivered]
    in_dlq = handed & ~delivered & frame["send_id"].isin(list(dead))
    frame.loc[in_dlq, "outcome"] = "failed"
    frame.loc[in_dlq, "reason"] = "dlq:" + frame.loc[in_dlq, "send_id"].map(dead).astype(str)
    pending = handed & ~delivered & ~in_dlq & (frame["planned_outcome"] == "queued")
    frame.loc[pending, "reason"] = "queued:not_settled_at_end"
    return frame


def outbox_frame(run: DemoRun) -> pd.DataFrame:
    rows = [vars(row) for row in run.outbox]
    columns = ["channel", "send_id", "user_id", "campaign_id", "purpose", "body", "subject", "title", "sent_at"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True)
    return frame


def customer_events(run: DemoRun) -> pd.DataFrame:
    """The customers' own events up to the end (history, later organic events, purchases after messages)."""
    if run.customers_frame is None:
        return pd.DataFrame(columns=["user_id", "event", "ts", "amount"])
    keys = [k for k in run.input_store.list_keys("events/") if k.endswith(".parquet")]
    frames = []
    for key in keys:
        part = pd.read_parquet(io.BytesIO(run.input_store.get_bytes(key)))
        keep = [c for c in ("user_id", "ts", "event_type", "amount") if c in part]
        frames.append(part[keep])
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["user_id", "ts", "event_type"])
    frame = frame.rename(columns={"event_type": "event"})
    frame["event"] = frame["event"].astype(str)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def campaign_summary(
    decisions: pd.DataFrame, deliveries: pd.DataFrame, feedback: pd.DataFrame, events: pd.DataFrame
) -> pd.DataFrame:
    """One row per campaign: audience, sent, capped, waited, suppressed, holdout, CTR, CVR, lift."""
    from funnelcast.reporting.kpis import compute_kpis  # noqa: PLC0415

    if decisions.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    whole = decisions.assign(variant_id="*", channel="*")
    sends = deliveries.assign(variant_id="*", channel="*") if len(deliveries) else deliveries
    if sends.empty:
        sends = pd.DataFrame(
            columns=["send_id", "campaign_id", "user_id", "variant_id", "channel", "status", "sent_at"]
        )
    kpis = compute_kpis(whole, sends, feedback, events).set_index("campaign_id")
    rows = []
    for campaign_id, group in decisions.groupby("campaign_id", sort=True):
        outcome, planned = group["outcome"].astype(str), group["planned_outcome"].astype(str)
        kpi = kpis.loc[campaign_id] if campaign_id in kpis.index else None

        def metric(name: str, kpi: Any = kpi) -> float:
            if kpi is None:
                return float("nan")
            value = kpi[name]
            return float(value.iloc[0] if isinstance(value, pd.Series) else value)

        rows.append(
            {
                "campaign_id": campaign_id,
                "audience": len(group),
                "sent": int((outcome == "sent").sum()),
                "capped": int((outcome == "capped").sum()),
                "waited": int((planned == "waiting").sum()),
                "suppressed": int((outcome == "suppressed").sum()),
                "holdout": int((outcome == "holdout").sum()),
                "ctr": metric("ctr"),
                "cvr": metric("cvr"),
                "lift": metric("lift"),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def write_outputs(run: DemoRun) -> DemoResult:
    from funnelcast.demo.requests import PIPELINE  # noqa: PLC0415
    from funnelcast.feedback.ingest import DELIVERY_COLUMNS, read_events  # noqa: PLC0415

    out = run.config.out
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out=out, started_at=run.config.start, ended_at=getattr(run, "ended_at", run.clock()))
    dlq_urls = {logical: url for logical, url in run.local.names.items() if logical.endswith("DLQ")}
    result.dead_letters = run.dispatcher.dead_letters(dlq_urls) if hasattr(run, "dispatcher") else []
    for letter in result.dead_letters:
        if letter["reason"] in {"unknown", "reported in batchItemFailures"}:
            job_id = _job_id(letter["body"])
            letter["reason"] = run.job_errors.get(letter["message_id"]) or run.job_errors.get(job_id, letter["reason"])

    deliveries = read_deliveries(run)
    decisions = final_decisions(read_decisions(run), deliveries, dlq_send_ids(result.dead_letters))
    outbox = outbox_frame(run)
    feedback = (
        read_events(run.data_root)
        if run.data_root.list_keys("feedback/events/")
        else pd.DataFrame(columns=["event_id", "send_id", "type", "ts", "channel", "user_id"])
    )
    events = customer_events(run)
    files = result.files
    if deliveries.empty:
        deliveries = pd.DataFrame(columns=DELIVERY_COLUMNS)
    files["deliveries"] = _parquet(deliveries, out / "deliveries.parquet")
    files["decisions"] = _parquet(decisions, out / "decisions.parquet")
    files["outbox"] = _parquet(outbox, out / "outbox.parquet")
    files["feedback"] = _parquet(feedback, out / "feedback.parquet")
    files["events"] = _parquet(events, out / "events.parquet")
    if run.customers_frame is not None:
        files["customers"] = _parquet(run.customers_frame, out / "customers.parquet")

    from funnelcast.reporting.run_dir import build_report  # noqa: PLC0415

    stages = {c.id: c.funnel_stage.value for c in run.ruleset.campaigns}
    report = build_report(out, funnel_stages=stages)
    files["kpis"] = _parquet(report.kpis, out / "kpis.parquet")
    files["report"] = out / "report.html"
    files["report"].write_text(report.html, encoding="utf-8")

    result.summary = campaign_summary(decisions, deliveries, feedback, events)
    delivered = int((deliveries["status"] == "sent").sum()) if len(deliveries) else 0
    result.aws_requests = run.counter.report(delivered)
    result.aws_requests["pipeline_total"] = run.counter.total(PIPELINE)
    files["aws_requests"] = out / "aws_requests.json"
    files["aws_requests"].write_text(json.dumps(result.aws_requests, indent=1), encoding="utf-8")
    files["dlq"] = out / "dlq.json"
    files["dlq"].write_text(json.dumps(result.dead_letters, indent=1, ensure_ascii=False), encoding="utf-8")
    files["log"] = out / "log.jsonl"
    files["log"].write_text(
        "".join(json.dumps(entry, ensure_ascii=False, default=str) + "\n" for entry in run.log), encoding="utf-8"
    )
    files["functions_log"] = out / "functions.log"
    files["functions_log"].write_text("".join(run.function_output), encoding="utf-8")
    result.stages = dict(run.stages.status)
    result.counts = {
        **run.stages.counts,
        "outbox": len(outbox),
        "deliveries": len(deliveries),
        "decisions": len(decisions),
        "dead_letters": len(result.dead_letters),
        "duplicates_injected": run.dispatcher.stats.duplicates_injected if hasattr(run, "dispatcher") else 0,
        "reactions_pending_at_end": run.customers.pending(),
    }
    result.errors = list(run.stages.errors)
    return result


def _job_id(body: str) -> str:
    try:
        return str(json.loads(body).get("job_id", ""))
    except (ValueError, AttributeError):
        return ""


def write_summary(run: DemoRun, result: DemoResult) -> None:
    """``summary.json``: stages, counts, timings, the campaign table and the run's configuration."""
    config = run.config
    document = {
        "config": {
            "users": config.users,
            "days": config.days,
            "history_days": config.history_days,
            "seed": config.seed,
            "start": config.start.isoformat(),
            "tick_minutes": config.tick.total_seconds() / 60,
            "faults": vars(config.faults) if config.faults else None,
            "server": config.server,
        },
        "rules_hash": getattr(run, "rules_hash", None),
        "ended_at": result.ended_at.isoformat() if result.ended_at else None,
        "stages": result.stages,
        "counts": result.counts,
        "timings_seconds": {k: round(v, 3) for k, v in result.timings.items()},
        "errors": result.errors,
        "campaigns": json.loads(result.summary.to_json(orient="records")),
    }
    path = result.out / "summary.json"
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
    result.files["summary"] = path
