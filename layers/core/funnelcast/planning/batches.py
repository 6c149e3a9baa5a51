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

from funnelcast.jobs import MAX_RECIPIENTS_PER_JOB, SendJob
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
    """One job, its SQS body, and when it may go: ``release_at`` is ``None`` for now, else the window opening."""

    job: SendJob
    release_at: datetime | None
    body: str


def _jsonable(value: Any) -> Any:
    """A feature value as JSON data for templates; ``None`` for missing (the template's default applies)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _contact(row: dict[str, Any], waterfall: Sequence[str]) -> dict[str, Any]:
    """Only the contact fields the waterfall's channels need travel with the job (less PII in queues)."""
    contact: dict[str, Any] = {}
    for channel in waterfall:
        for name in CONTACT_FIELDS[channel]:
            value = _jsonable(row.get(name))
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
    grouped by release time (their ``not_before``), each group its own jobs.
    """
    campaign = context.campaign
    chosen = decided["outcome"].isin(["queued", "waiting"]).to_numpy(dtype=bool)
    if not chosen.any():
        return []
    variables = template_variables(campaign, list(features.columns))
    contact_columns = sorted({name for names in CONTACT_FIELDS.values() for name in names} & set(features.columns))
    picked = features.loc[chosen, list(dict.fromkeys(["user_id", *contact_columns, *variables]))]
    rows = picked.to_dict("records")
    plan = decided.loc[chosen]
    groups: dict[tuple[str, datetime | None], list[dict[str, Any]]] = {}
    for record, outcome, channel, waterfall, sent, variant, tz, night, opens, closes in zip(
        rows,
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
    ):
        values = {name: _jsonable(record.get(name)) for name in variables}
        recipient = {
            "send_id": sent,
            "user_id": _jsonable(record["user_id"]),
            "variant_id": variant,
            "waterfall": list(waterfall),
            "timezone": tz,
            "night_ads_consent": bool(night),
            "contact": _contact(record, waterfall),
            "variables": {k: v for k, v in values.items() if v is not None},
            "not_before": opens.isoformat(),
            "not_after": closes.isoformat(),
        }
        release = opens if outcome == "waiting" else None
        groups.setdefault((channel, release), []).append(recipient)
    jobs: list[PlannedJob] = []
    counter: dict[str, int] = {}
    for (channel, release), recipients in groups.items():
        for chunk in _chunks(recipients, campaign_bytes_hint=len(json.dumps(recipients[0], default=str))):
            number = counter.get(channel, 0)
            counter[channel] = number + 1
            job = SendJob.model_validate(
                {
                    "job_id": f"{context.run_id}/{channel}/{number}",
                    "run_id": context.run_id,
                    "campaign_id": campaign.id,
                    "rules_hash": rules_hash,
                    "channel": channel,
                    "purpose": campaign.purpose.value,
                    "topic": campaign.topic,
                    "scheduled_at": scheduled_at,
                    "recipients": chunk,
                }
            )
            jobs.extend(_fit(job, release))
    return jobs


def _chunks(recipients: list[dict[str, Any]], *, campaign_bytes_hint: int) -> list[list[dict[str, Any]]]:
    """Slices of <=100 recipients, fewer when recipients are large (estimated from the first one)."""
    per_job = max(1, min(MAX_RECIPIENTS_PER_JOB, MAX_JOB_BYTES // max(1, 2 * campaign_bytes_hint)))
    return [recipients[i : i + per_job] for i in range(0, len(recipients), per_job)]


def _fit(job: SendJob, release: datetime | None) -> list[PlannedJob]:
    """The job, split in halves until every body is under :data:`MAX_JOB_BYTES`."""
    body = job.model_dump_json()
    if len(body.encode()) <= MAX_JOB_BYTES or len(job.recipients) == 1:
        return [PlannedJob(job, release, body)]
    half = len(job.recipients) // 2
    first = job.model_copy(update={"job_id": f"{job.job_id}a", "recipients": job.recipients[:half]})
    second = job.model_copy(update={"job_id": f"{job.job_id}b", "recipients": job.recipients[half:]})
    return _fit(first, release) + _fit(second, release)
