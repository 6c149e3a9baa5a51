"""Send jobs from decided rows: per channel (and per release time for waiting rows), <=100 recipients.

Job ids are stable (``<run_id>/<channel>/<n>`` in user order), so a re-planned run produces the same
jobs and the senders' send-id de-duplication makes a second enqueue harmless.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from funnelcast.jobs import JOB_VERSION, MAX_RECIPIENTS_PER_JOB, SendJob
from funnelcast.planning.eligibility import PlanContext, template_variables

MAX_JOB_BYTES = 200_000
"""Well under SQS's 256 KiB message limit (the batch request limit is handled by the queue adapter)."""

CONTACT_FIELDS = {
    "email": ("email",),
    "sms": ("phone",),
    "push": ("push_endpoint",),
    "kakao_alimtalk": ("phone",),
    "kakao_brand": ("phone", "kakao_friend"),
    "webhook": (),
}


@dataclass(frozen=True)
class PlannedJob:
    """One job's SQS body, its channel and when it may go (``release_at`` ``None`` = now, else the opening)."""

    job_id: str
    channel: str
    recipients: int
    release_at: datetime | None
    body: str

    @property
    def job(self) -> SendJob:
        """The body parsed as the senders parse it."""
        return SendJob.model_validate_json(self.body)


def _jsonable(value: Any) -> Any:
    """A feature value as JSON data for templates; ``None`` for missing (the template's default applies)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    return value


def _values(series: pd.Series) -> list[Any]:
    """A column as plain JSON-able Python values, ``None`` where missing (vectorised for the common dtypes)."""
    missing = series.isna().to_numpy(dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        texts = [None if gone else value.isoformat() for value, gone in zip(series.tolist(), missing, strict=True)]
        return texts
    values = series.astype(object).tolist()
    plain = (str, int, float, bool)
    return [
        None if gone else (v if type(v) in plain else _jsonable(v)) for v, gone in zip(values, missing, strict=True)
    ]


def _contact(columns: dict[str, list[Any]], row: int, waterfall: Sequence[str]) -> dict[str, Any]:
    """Only the contact fields the waterfall's channels need travel with the job (less PII in queues)."""
    contact: dict[str, Any] = {}
    for channel in waterfall:
        for name in CONTACT_FIELDS[channel]:
            value = columns[name][row] if name in columns else None
            if name == "kakao_friend":
                contact[name] = value is True or str(value).strip().lower() in {"true", "1", "yes"}
            elif value is not None and str(value).strip():
                contact[name] = str(value)
    return contact


def build_jobs(
    context: PlanContext,
    decided: pd.DataFrame,
    features: pd.DataFrame,
    rules_hash: str,
    scheduled_at: datetime,
) -> list[PlannedJob]:
    """Jobs for the ``queued`` and ``waiting`` rows of ``decided`` (aligned by row with ``features``).

    ``queued`` rows carry ``not_before`` / ``not_after`` of their open window; ``waiting`` rows are
    grouped by release time (their ``not_before``), each group its own jobs. Bodies are written as
    JSON directly (pydantic per recipient costs seconds at 100k); the first job of every group is
    parsed back with :class:`SendJob` so the wire contract is checked on every run.
    """
    campaign = context.campaign
    chosen = decided["outcome"].isin(["queued", "waiting"]).to_numpy(dtype=bool)
    if not chosen.any():
        return []
    variables = template_variables(campaign, list(features.columns))
    contact_columns = sorted({name for names in CONTACT_FIELDS.values() for name in names} & set(features.columns))
    picked = features.loc[chosen]
    columns = {name: _values(picked[name]) for name in dict.fromkeys(["user_id", *contact_columns, *variables])}
    plan = decided.loc[chosen]
    iso: dict[datetime, str] = {}
    groups: dict[tuple[str, datetime | None], list[dict[str, Any]]] = {}
    for row, (outcome, channel, waterfall, sent, variant, tz, night, opens, closes) in enumerate(
        zip(
            plan["outcome"].tolist(),
            plan["channel"].tolist(),
            plan["waterfall"].tolist(),
            plan["send_id"].tolist(),
            plan["variant_id"].tolist(),
            plan["timezone"].tolist(),
            plan["night_ads"].tolist(),
            plan["not_before"].tolist(),
            plan["not_after"].tolist(),
            strict=True,
        )
    ):
        values = {name: columns[name][row] for name in variables}
        recipient = {
            "send_id": sent,
            "user_id": columns["user_id"][row],
            "variant_id": variant,
            "waterfall": list(waterfall),
            "timezone": tz,
            "night_ads_consent": bool(night),
            "contact": _contact(columns, row, waterfall),
            "variables": {k: v for k, v in values.items() if v is not None},
            "not_before": iso.get(opens) or iso.setdefault(opens, opens.isoformat()),
            "not_after": iso.get(closes) or iso.setdefault(closes, closes.isoformat()),
        }
        release = opens if outcome == "waiting" else None
        groups.setdefault((channel, release), []).append(recipient)
    jobs: list[PlannedJob] = []
    counter: dict[str, int] = {}
    header = {
        "v": JOB_VERSION,
        "run_id": context.run_id,
        "campaign_id": campaign.id,
        "rules_hash": rules_hash,
        "purpose": campaign.purpose.value,
        "topic": campaign.topic,
        "scheduled_at": scheduled_at.isoformat(),
        "fallback_from": None,
    }
    for (channel, release), recipients in groups.items():
        hint = len(json.dumps(recipients[0], ensure_ascii=False).encode())
        first = True
        for chunk in _chunks(recipients, campaign_bytes_hint=hint):
            number = counter.get(channel, 0)
            counter[channel] = number + 1
            job = {**header, "job_id": f"{context.run_id}/{channel}/{number}", "channel": channel, "recipients": chunk}
            planned = _fit(job, release)
            if first:
                SendJob.model_validate_json(planned[0].body)  # raises if the wire contract drifted
                first = False
            jobs.extend(planned)
    return jobs


def _chunks(recipients: list[dict[str, Any]], *, campaign_bytes_hint: int) -> list[list[dict[str, Any]]]:
    """Slices of <=100 recipients, fewer when recipients are large (estimated from the first one)."""
    per_job = max(1, min(MAX_RECIPIENTS_PER_JOB, MAX_JOB_BYTES // max(1, 2 * campaign_bytes_hint)))
    return [recipients[i : i + per_job] for i in range(0, len(recipients), per_job)]


def _fit(job: dict[str, Any], release: datetime | None) -> list[PlannedJob]:
    """The job, split in halves until every body is under :data:`MAX_JOB_BYTES`."""
    body = json.dumps(job, ensure_ascii=False, separators=(",", ":"))
    recipients: list[dict[str, Any]] = job["recipients"]
    if len(body.encode()) <= MAX_JOB_BYTES or len(recipients) == 1:
        return [PlannedJob(job["job_id"], job["channel"], len(recipients), release, body)]
    half = len(recipients) // 2
    first = {**job, "job_id": f"{job['job_id']}a", "recipients": recipients[:half]}
    second = {**job, "job_id": f"{job['job_id']}b", "recipients": recipients[half:]}
    return _fit(first, release) + _fit(second, release)
