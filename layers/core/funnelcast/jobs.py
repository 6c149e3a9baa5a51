"""Messages between the planner, the channel queues and the senders, and the records they leave.

These models are the wire contract: the planner writes ``SendJob`` bodies to SQS, the senders
parse them, and both write ``DeliveryRecord`` / ``DecisionRecord`` rows (SPEC §3, §4).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from funnelcast.rules.models import Channel, Purpose

JOB_VERSION = 1
MAX_RECIPIENTS_PER_JOB = 100


class Contact(BaseModel):
    """What a channel needs to reach the user; absent keys mean the channel cannot."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    email: str | None = None
    phone: str | None = None
    push_endpoint: str | None = None
    kakao_friend: bool = False


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    send_id: str
    user_id: int | str = Field(union_mode="left_to_right")
    variant_id: str
    waterfall: list[Channel] = Field(description="remaining channels, this job's channel first")
    timezone: str
    night_ads_consent: bool = False
    contact: Contact
    variables: dict[str, Any] = Field(default_factory=dict, description="template variables")
    not_before: datetime | None = Field(default=None, description="UTC; earliest allowed send time")
    not_after: datetime | None = Field(default=None, description="UTC; end of the allowed window")


class SendJob(BaseModel):
    """One SQS message: up to ``MAX_RECIPIENTS_PER_JOB`` recipients of one run on one channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    v: int = JOB_VERSION
    job_id: str
    run_id: str
    campaign_id: str
    rules_hash: str
    channel: Channel
    purpose: Purpose
    topic: str | None = None
    scheduled_at: datetime
    recipients: list[Recipient] = Field(min_length=1, max_length=MAX_RECIPIENTS_PER_JOB)
    fallback_from: Channel | None = None


class Outcome(StrEnum):
    """The coarse outcome of SPEC §3; ``reason`` carries the detail (``capped:week:sms``)."""

    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    EXCLUDED = "excluded"
    HOLDOUT = "holdout"
    NO_CHANNEL = "no_channel"
    SUPPRESSED = "suppressed"
    CAPPED = "capped"
    RESEND_AFTER = "resend_after"
    LOWER_PRIORITY = "lower_priority"
    WAITING = "waiting"
    QUEUED = "queued"
    SKIPPED = "skipped"


class DecisionRecord(BaseModel):
    """One row of ``decisions.parquet``: SPEC columns plus ``send_id`` and ``channel``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    run_id: str
    campaign_id: str
    user_id: int | str = Field(union_mode="left_to_right")
    variant_id: str | None
    outcome: Outcome
    reason: str
    decided_at: datetime
    send_id: str | None = None
    channel: Channel | None = None


class DeliveryStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CAPPED = "capped"
    SKIPPED = "skipped"


class DeliveryRecord(BaseModel):
    """One row of ``deliveries``: SPEC §4 columns plus reason, provider id and rules hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    send_id: str
    run_id: str
    campaign_id: str
    user_id: int | str = Field(union_mode="left_to_right")
    variant_id: str
    channel: Channel
    status: DeliveryStatus
    reason: str = ""
    sent_at: datetime
    local_sent_at: datetime
    purpose: Purpose
    topic: str | None = None
    provider_message_id: str | None = None
    rules_hash: str = ""
    fallback_from: Channel | None = None
