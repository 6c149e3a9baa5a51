"""The channel worker: one ``SendJob`` in, one outcome per recipient out (SPEC §3).

Per recipient: active-set check -> send window -> cap reservation -> at-most-once claim ->
render + compliance -> provider (concurrently, bounded) -> the job's final states in one batch ->
delivery records. A refusal hands the recipient to the next channel of its waterfall under the
same reservation; a retryable error
makes the SQS record fail (partial batch response) with the reservation kept and the claim
released; a final failure releases the reservation.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from funnelcast.caps.policy import Reservation
from funnelcast.errors import FunnelcastError, ProviderError, TemplateRenderError
from funnelcast.jobs import DeliveryRecord, DeliveryStatus, Recipient, SendJob
from funnelcast.rules.models import Campaign, Channel, RuleSet
from funnelcast.sending.providers.base import AmbiguousProviderError, Provider, ProviderRequest
from funnelcast.sending.render import RenderedMessage, RenderRequest, render_message
from funnelcast.sending.state import FinalState, SendStates
from funnelcast.sending.windows import next_window
from funnelcast.storage import ObjectStore

MAX_SQS_DELAY_SECONDS = 900
DEFAULT_LEASE = timedelta(minutes=5)


class CapReserver(Protocol):
    """The part of ``funnelcast.caps.store.CapStore`` the sender uses."""

    def reserve(self, reservation: Any, *, policy: Any = None) -> Any: ...
    def release(self, reservation: Any) -> None: ...


class RuleSets(Protocol):
    def bundle(self, rules_hash: str) -> RuleSet: ...
    def active(self) -> RuleSet | None: ...


class JobQueues(Protocol):
    def send(self, channel: str, body: str, *, delay_seconds: int = 0) -> None: ...


class MetricsSink(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


class NoMetrics:
    def add_metric(self, name: str, unit: str, value: float) -> None:
        del name, unit, value


class BadJobError(FunnelcastError):
    """A job cannot be processed at all (wrong channel, missing template): dead-lettered."""


class JobInterruptedError(FunnelcastError):
    """A recipient hit an unexpected error; ``outcome`` holds the rows of the others (SQS redelivers)."""

    def __init__(self, outcome: JobOutcome, cause: BaseException) -> None:
        self.outcome = outcome
        super().__init__(f"{type(cause).__name__}: {cause}")


@dataclass
class SenderDependencies:
    """Everything the worker touches; ``from_settings`` builds the AWS ones, tests pass fakes."""

    rulesets: RuleSets
    caps: CapReserver
    states: SendStates
    queues: JobQueues
    deliveries: ObjectStore
    providers: Mapping[str, Provider]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    concurrency: int = 10
    lease: timedelta = DEFAULT_LEASE
    unsubscribe_base_url: str = ""
    unsubscribe_secret: Callable[[], bytes] = lambda: b""
    metrics: MetricsSink = field(default_factory=NoMetrics)
    log: Callable[[str, dict[str, Any]], None] = lambda message, extra: None

    @classmethod
    def from_settings(cls, settings: Any) -> SenderDependencies:
        from funnelcast.sending.wiring import dependencies_from_settings  # noqa: PLC0415

        return dependencies_from_settings(settings)


@dataclass
class JobOutcome:
    """What one job produced: delivery rows, whether SQS must redeliver it, and follow-up jobs."""

    records: list[DeliveryRecord] = field(default_factory=list)
    retry: bool = False
    fallbacks: int = 0
    requeued: int = 0
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Attempt:
    recipient: Recipient
    reservation: Any
    message: RenderedMessage | None = None


def _record(  # noqa: PLR0917
    job: SendJob,
    recipient: Recipient,
    now: datetime,
    status: DeliveryStatus,
    reason: str,
    message_id: str | None = None,
) -> DeliveryRecord:
    return DeliveryRecord(
        send_id=recipient.send_id,
        run_id=job.run_id,
        campaign_id=job.campaign_id,
        user_id=recipient.user_id,
        variant_id=recipient.variant_id,
        channel=job.channel,
        status=status,
        reason=reason,
        sent_at=now,
        local_sent_at=now.astimezone(ZoneInfo(recipient.timezone)),
        purpose=job.purpose,
        topic=job.topic,
        provider_message_id=message_id,
        rules_hash=job.rules_hash,
        fallback_from=job.fallback_from,
    )


def _follow_up(job: SendJob, recipients: list[Recipient], *, suffix: str, **changes: Any) -> SendJob:
    return job.model_copy(update={"job_id": f"{job.job_id}~{suffix}", "recipients": recipients, **changes})


def process_job(job: SendJob, deps: SenderDependencies) -> JobOutcome:
    """Send one job; never raises for one recipient's problem, raises ``BadJobError`` for the job's."""
    now = deps.clock()
    outcome = JobOutcome()
    channel = job.channel.value
    provider = deps.providers.get(channel)
    if provider is None:
        raise BadJobError(f"job {job.job_id}: no provider configured for channel {channel!r}")
    active = deps.rulesets.active()
    if active is None or all(c.id != job.campaign_id for c in active.campaigns):
        for recipient in job.recipients:
            outcome.records.append(_record(job, recipient, now, DeliveryStatus.SKIPPED, "skipped:campaign_inactive"))
        _count(outcome, "skipped", len(job.recipients))
        return outcome
    ruleset = deps.rulesets.bundle(job.rules_hash)
    try:
        campaign = ruleset.campaign(job.campaign_id)
    except KeyError as exc:
        raise BadJobError(f"job {job.job_id}: campaign {job.campaign_id!r} not in rule set {job.rules_hash}") from exc
    ready = _hold_back_out_of_window(job, campaign, ruleset, now, deps, outcome)
    with ThreadPoolExecutor(max_workers=max(1, deps.concurrency)) as pool:
        futures = [pool.submit(_send_one, job, r, campaign, ruleset, now, provider, deps) for r in ready]
    results: list[_Result] = []
    crash: BaseException | None = None
    for future in futures:
        try:
            results.append(future.result())
        except Exception as exc:  # one recipient's unexpected error must not lose the others' rows
            crash = crash or exc
    # Recorded before any follow-up enqueue (a fallback channel must find its handed_off claim) and
    # before SQS sees a retry; a worker dying before this line leaves its claims in flight, which
    # expire into ``unknown``: never resent.
    deps.states.finish_all([result.final for result in results if result.final is not None], now)
    fallback: dict[str, list[Recipient]] = {}
    for result in results:
        if result.record is not None:
            outcome.records.append(result.record)
            _count(outcome, result.record.status.value)
        if result.retry:
            outcome.retry = True
            _count(outcome, "retry")
        if result.fallback_to is not None:
            fallback.setdefault(result.fallback_to, []).append(result.fallback_recipient)  # type: ignore[arg-type]
        if result.latency_ms is not None:
            deps.metrics.add_metric("ProviderLatency", "Milliseconds", result.latency_ms)
    for next_channel, recipients in fallback.items():
        # The handed_off states were written before this enqueue; a lost enqueue is retried by
        # redelivery of this job (the recipients are then skipped as handed_off) - so send first.
        follow = _follow_up(
            job, recipients, suffix=f"fb-{next_channel}", channel=Channel(next_channel), fallback_from=job.channel
        )
        deps.queues.send(next_channel, follow.model_dump_json())
        outcome.fallbacks += len(recipients)
        _count(outcome, "fallback", len(recipients))
    for name, value in outcome.counts.items():
        deps.metrics.add_metric(name.capitalize(), "Count", value)
    if crash is not None:
        raise JobInterruptedError(outcome, crash) from crash
    return outcome


def _count(outcome: JobOutcome, name: str, value: int = 1) -> None:
    outcome.counts[name] = outcome.counts.get(name, 0) + value


def _hold_back_out_of_window(  # noqa: PLR0917
    job: SendJob, campaign: Campaign, ruleset: RuleSet, now: datetime, deps: SenderDependencies, outcome: JobOutcome
) -> list[Recipient]:
    """Recipients sendable now; the others go back to the queue with a delay (never dropped)."""
    ready: list[Recipient] = []
    later: dict[int, list[Recipient]] = {}
    for recipient in job.recipients:
        if recipient.not_before is not None and now < recipient.not_before:
            wait = math.ceil((recipient.not_before - now).total_seconds())
            later.setdefault(min(wait, MAX_SQS_DELAY_SECONDS), []).append(recipient)
        elif recipient.not_after is not None and now >= recipient.not_after:
            window = next_window(
                now, campaign, ruleset.policy.compliance, ZoneInfo(recipient.timezone), recipient.night_ads_consent
            )
            if window is None:  # no allowed minute in two days: the rules forbid it, say so
                outcome.records.append(_record(job, recipient, now, DeliveryStatus.FAILED, "failed:no_window"))
                continue
            opens, closes = window
            moved = recipient.model_copy(update={"not_before": opens, "not_after": closes})
            wait = math.ceil((opens - now).total_seconds())
            if wait <= 0:
                ready.append(moved)
            else:
                later.setdefault(min(wait, MAX_SQS_DELAY_SECONDS), []).append(moved)
        else:
            ready.append(recipient)
    for delay, recipients in later.items():
        follow = _follow_up(job, recipients, suffix=f"w{delay}")
        deps.queues.send(job.channel.value, follow.model_dump_json(), delay_seconds=delay)
        outcome.requeued += len(recipients)
    return ready


@dataclass
class _Result:
    record: DeliveryRecord | None = None
    retry: bool = False
    fallback_to: str | None = None
    fallback_recipient: Recipient | None = None
    latency_ms: float | None = None
    final: FinalState | None = None  # the state to record once the job's provider calls are over


def _send_one(  # noqa: PLR0917
    job: SendJob,
    recipient: Recipient,
    campaign: Campaign,
    ruleset: RuleSet,
    now: datetime,
    provider: Provider,
    deps: SenderDependencies,
) -> _Result:
    channel = job.channel.value
    send_id = recipient.send_id

    def final(state: str, on_channel: str = channel) -> FinalState:
        return FinalState(send_id, state, on_channel)

    local_day = now.astimezone(ZoneInfo(recipient.timezone)).date()
    reservation = Reservation(
        user_id=recipient.user_id,
        send_id=send_id,
        campaign_id=job.campaign_id,
        channel=channel,
        topic=job.topic,
        local_day=local_day,
        sent_at=now,
        resend_after=campaign.resend_after,
    )
    # The job's own rule set decides the caps: the store's policy is from its cold start.
    reserved = deps.caps.reserve(reservation, policy=ruleset.policy)
    if reserved.status == "refused":
        cap = reserved.cap or "unknown"
        reason = "resend_after" if cap == "resend_after" else f"capped:{cap}"
        if job.fallback_from is not None:
            # The first channel's place is still held: nothing went out, so give it back.
            deps.caps.release(reservation)
            return _Result(_record(job, recipient, now, DeliveryStatus.CAPPED, reason), final=final("failed"))
        return _Result(_record(job, recipient, now, DeliveryStatus.CAPPED, reason))
    claim = deps.states.claim(send_id, channel, now, deps.lease)
    if claim.status in {"done", "handed_off"}:
        deps.log("send already settled; skipped", {"send_id": send_id, "state": claim.state})
        return _Result()
    if claim.status == "in_flight":
        return _Result(retry=True)
    if claim.status == "expired":
        # A worker died between the provider call and its record: ambiguous, never resent.
        return _Result(
            _record(job, recipient, now, DeliveryStatus.UNKNOWN, "unknown:worker_lost"), final=final("unknown")
        )
    variant = next((v for v in campaign.variants if v.id == recipient.variant_id), None)
    message = variant.messages.get(job.channel) if variant is not None else None
    try:
        if message is None:
            raise TemplateRenderError(f"variant {recipient.variant_id!r} has no {channel} message")
        rendered = render_message(
            RenderRequest(
                rules_hash=job.rules_hash,
                campaign_id=job.campaign_id,
                variant_id=recipient.variant_id,
                channel=channel,
                purpose=job.purpose,
                send_id=send_id,
                message=message,
                compliance=ruleset.policy.compliance,
                variables=recipient.variables,
                link=campaign.link,
            ),
            unsubscribe_base_url=deps.unsubscribe_base_url,
            unsubscribe_secret=deps.unsubscribe_secret() if job.channel.value == "email" else b"",
        )
    except TemplateRenderError as exc:
        deps.log("template failed", {"send_id": send_id, "error": str(exc)})
        deps.caps.release(reservation)
        reason = "failed:sms_too_long" if str(exc).startswith("sms_too_long") else "failed:template"
        return _Result(_record(job, recipient, now, DeliveryStatus.FAILED, reason), final=final("failed"))
    request = ProviderRequest(send_id, job.campaign_id, recipient.user_id, job.purpose, recipient.contact, rendered)
    started = time.perf_counter()
    try:
        message_id = provider.send(request)
    except AmbiguousProviderError as exc:
        return _Result(
            _record(job, recipient, now, DeliveryStatus.UNKNOWN, f"unknown:{exc.reason}"),
            latency_ms=_ms(started),
            final=final("unknown"),
        )
    except ProviderError as exc:
        latency = _ms(started)
        if exc.retryable:
            return _Result(retry=True, latency_ms=latency, final=final("released"))
        if exc.refused:
            remaining = [c for c in recipient.waterfall if c != job.channel]
            if remaining:
                moved = recipient.model_copy(update={"waterfall": remaining})
                return _Result(
                    fallback_to=remaining[0].value,
                    fallback_recipient=moved,
                    latency_ms=latency,
                    final=final("handed_off", remaining[0].value),
                )
            deps.caps.release(reservation)
            return _Result(
                _record(job, recipient, now, DeliveryStatus.FAILED, "no_channel"),
                latency_ms=latency,
                final=final("failed"),
            )
        deps.caps.release(reservation)
        return _Result(
            _record(job, recipient, now, DeliveryStatus.FAILED, f"failed:{exc.reason}"),
            latency_ms=latency,
            final=final("failed"),
        )
    return _Result(
        _record(job, recipient, now, DeliveryStatus.SENT, "sent", message_id),
        latency_ms=_ms(started),
        final=final("done"),
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def write_deliveries(records: list[DeliveryRecord], channel: str, now: datetime, store: ObjectStore) -> str | None:
    """All rows of one invocation as ONE JSONL object; returns its key (``None`` when empty)."""
    if not records:
        return None
    key = f"deliveries/dt={now.astimezone(UTC):%Y-%m-%d}/{channel}-{uuid.uuid4().hex}.jsonl"
    body = "".join(record.model_dump_json() + "\n" for record in records).encode()
    store.put_bytes(key, body, if_absent=True)
    return key


def parse_job(body: str, expected_channel: str) -> SendJob:
    """The job in an SQS body; raises ``BadJobError`` naming what is wrong (the record is dead-lettered)."""
    from pydantic import ValidationError  # noqa: PLC0415

    try:
        data = json.loads(body)
    except ValueError as exc:
        raise BadJobError(f"job body is not valid JSON: {exc}") from exc
    try:
        job = SendJob.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise BadJobError(f"job body violates the SendJob schema: {problems}") from exc
    if expected_channel and job.channel.value != expected_channel:
        raise BadJobError(
            f"job {job.job_id} is for channel {job.channel.value!r}, this worker sends {expected_channel!r}"
        )
    return job
