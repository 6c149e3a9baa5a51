"""Turn provider payloads (SES event publishing, SNS push status, vendor reports) into ``FeedbackEvent``.

Pure: no boto3, no clock. Every rejection raises ``FeedbackInputError`` naming the field at fault.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from funnelcast.errors import FunnelcastError

MAX_BODY_BYTES = 256 * 1024
#: Event ids of deliveries implied by an open/click (never stored; made again on every read).
IMPLIED_PREFIX = "implied-"
#: Send ids known only by the provider's message id until the deliveries resolve them.
PROVIDER_ID_PREFIX = "provider:"


class FeedbackInputError(FunnelcastError):
    """A feedback payload cannot be used; the message says which field and why."""


class SignatureError(FunnelcastError):
    """A vendor report's HMAC signature is missing or wrong."""


class FeedbackType(StrEnum):
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    BOUNCED = "bounced"
    COMPLAINT = "complaint"
    UNSUBSCRIBED = "unsubscribed"
    FAILED = "failed"


class FeedbackEvent(BaseModel):
    """One normalised feedback event, one JSONL row under ``feedback/events/dt=<day>/``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_id: str
    send_id: str
    type: FeedbackType
    ts: datetime
    channel: str
    user_id: str | None = None


_SES_TYPES = {
    "Delivery": FeedbackType.DELIVERED,
    "Open": FeedbackType.OPENED,
    "Click": FeedbackType.CLICKED,
    "Bounce": FeedbackType.BOUNCED,
    "Complaint": FeedbackType.COMPLAINT,
    "Subscription": FeedbackType.UNSUBSCRIBED,
    "Reject": FeedbackType.FAILED,
    "Rendering Failure": FeedbackType.FAILED,
}
_SES_DETAIL_KEY = {
    "Delivery": "delivery",
    "Open": "open",
    "Click": "click",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Subscription": "subscription",
}


def _parse_ts(value: object, where: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise FeedbackInputError(f"{where}: missing timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FeedbackInputError(f"{where}: timestamp {value!r} is not ISO 8601") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _event_id(*parts: str) -> str:
    # Providers redeliver the same record; a content hash makes the retry collide with the original.
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def parse_ses_record(record: dict[str, Any]) -> FeedbackEvent | None:
    """An SES event publishing record (the SNS ``Message``). ``None`` for types we do not track."""
    kind = record.get("eventType") or record.get("notificationType")
    if not isinstance(kind, str):
        raise FeedbackInputError("ses: eventType is missing")
    if kind == "Send":
        return None
    if kind not in _SES_TYPES:
        raise FeedbackInputError(f"ses: unknown eventType {kind!r}")
    mail = record.get("mail")
    if not isinstance(mail, dict):
        raise FeedbackInputError("ses: mail object is missing")
    tags = mail.get("tags") or {}
    send_ids = tags.get("send_id") if isinstance(tags, dict) else None
    if not send_ids or not isinstance(send_ids, list):
        raise FeedbackInputError("ses: mail.tags.send_id is missing")
    send_id = str(send_ids[0])
    detail = record.get(_SES_DETAIL_KEY.get(kind, ""), {}) or {}
    ts = _parse_ts(detail.get("timestamp") or mail.get("timestamp"), f"ses {kind}")
    feedback_type = _SES_TYPES[kind]
    if kind == "Subscription":
        # SES publishes Subscription for any preference change; only an opt-out matters here.
        new_topics = detail.get("newTopicPreferences", {}) if isinstance(detail, dict) else {}
        if not new_topics.get("unsubscribeAll") and not any(
            t.get("subscriptionStatus") == "OptOut" for t in new_topics.get("topicSubscriptionStatus", [])
        ):
            return None
    user_ids = tags.get("user_id")
    user_id = str(user_ids[0]) if isinstance(user_ids, list) and user_ids else None
    message_id = str(mail.get("messageId", ""))
    return FeedbackEvent(
        event_id=_event_id("ses", message_id, kind, ts.isoformat(), str(detail.get("link", ""))),
        send_id=send_id,
        type=feedback_type,
        ts=ts,
        channel="email",
        user_id=user_id,
    )


def parse_push_status(record: dict[str, Any]) -> FeedbackEvent:
    """An SNS mobile push delivery status log record (``status`` SUCCESS/FAILURE).

    The send id is ``send_id`` (top level or in ``notification``) when the forwarder adds it, else
    ``provider:<notification.messageId>`` (see :func:`funnelcast.feedback.ingest.resolve_provider_ids`).
    """
    notification = record.get("notification")
    delivery = record.get("delivery")
    if not isinstance(notification, dict) or not isinstance(delivery, dict):
        raise FeedbackInputError("push: notification/delivery objects are missing")
    send_id = record.get("send_id") or notification.get("send_id")
    if not send_id:
        # SNS's own delivery-status log knows only its MessageId: the push sender stored it as the
        # delivery's provider_message_id, so it is resolved to the send id when the log is read.
        message_id = notification.get("messageId")
        if not message_id:
            raise FeedbackInputError("push: send_id and notification.messageId are both missing")
        send_id = f"{PROVIDER_ID_PREFIX}{message_id}"
    status = record.get("status")
    if status not in ("SUCCESS", "FAILURE"):
        raise FeedbackInputError(f"push: status {status!r} is not SUCCESS or FAILURE")
    ts = _parse_ts(notification.get("timestamp"), "push")
    return FeedbackEvent(
        event_id=_event_id("push", str(notification.get("messageId", "")), str(status)),
        send_id=str(send_id),
        type=FeedbackType.DELIVERED if status == "SUCCESS" else FeedbackType.FAILED,
        ts=ts,
        channel="push",
    )


_VENDOR_TYPES = {t.value for t in FeedbackType}
_VENDOR_CHANNELS = {"sms", "kakao_alimtalk", "kakao_brand", "webhook"}


def verify_signature(body: bytes, signature: str | None, secret: bytes) -> None:
    """HMAC-SHA256 hex of the raw body; compared in constant time."""
    if not signature:
        raise SignatureError("missing X-Funnelcast-Signature header")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    given = signature.removeprefix("sha256=").strip().lower()
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match")


def check_body_size(body: bytes) -> None:
    """Refuse bodies over ``MAX_BODY_BYTES`` before any other work (signature, JSON)."""
    if len(body) > MAX_BODY_BYTES:
        raise FeedbackInputError(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")


def parse_vendor_body(body: bytes) -> list[FeedbackEvent]:
    """A vendor report: ``{"reports": [{id, send_id, status, ts, channel[, user_id]}]}`` or one such object."""
    check_body_size(body)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedbackInputError(f"body is not JSON: {exc}") from exc
    reports = payload.get("reports", [payload]) if isinstance(payload, dict) else payload
    if not isinstance(reports, list) or not reports:
        raise FeedbackInputError("body holds no reports")
    events: list[FeedbackEvent] = []
    for index, report in enumerate(reports):
        where = f"reports[{index}]"
        if not isinstance(report, dict):
            raise FeedbackInputError(f"{where}: not an object")
        for field in ("id", "send_id", "status", "ts", "channel"):
            if not report.get(field):
                raise FeedbackInputError(f"{where}.{field} is missing")
        if report["status"] not in _VENDOR_TYPES:
            raise FeedbackInputError(f"{where}.status {report['status']!r} is not one of {sorted(_VENDOR_TYPES)}")
        if report["channel"] not in _VENDOR_CHANNELS:
            raise FeedbackInputError(f"{where}.channel {report['channel']!r} is not one of {sorted(_VENDOR_CHANNELS)}")
        events.append(
            FeedbackEvent(
                event_id=_event_id("vendor", str(report["channel"]), str(report["id"]), str(report["status"])),
                send_id=str(report["send_id"]),
                type=FeedbackType(report["status"]),
                ts=_parse_ts(report["ts"], f"{where}.ts"),
                channel=str(report["channel"]),
                user_id=str(report["user_id"]) if report.get("user_id") is not None else None,
            )
        )
    return events


def parse_unsubscribe_token(token: str, secret: bytes, *, now: datetime) -> FeedbackEvent:
    """The one-click unsubscribe link of an email (``?t=<send_id>.<mac>``, signed by the sender).

    The event id depends only on the send id, so clicking the link twice is one unsubscribe.
    """
    from funnelcast.sending.compliance import verify_token  # noqa: PLC0415 (pure, small)

    send_id = verify_token(token, secret)
    if send_id is None:
        raise SignatureError("unsubscribe token signature does not match")
    return FeedbackEvent(
        event_id=_event_id("unsubscribe-link", send_id),
        send_id=send_id,
        type=FeedbackType.UNSUBSCRIBED,
        ts=now,
        channel="email",
    )


def parse_sqs_body(body: str) -> list[FeedbackEvent]:
    """An SQS body: an SNS envelope whose ``Message`` is an SES record or a push status record."""
    try:
        envelope = json.loads(body)
    except ValueError as exc:
        raise FeedbackInputError(f"sqs body is not JSON: {exc}") from exc
    message: Any = envelope.get("Message", envelope) if isinstance(envelope, dict) else None
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except ValueError as exc:
            raise FeedbackInputError(f"SNS Message is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise FeedbackInputError("SNS Message is not an object")
    if "notification" in message and "delivery" in message:
        return [parse_push_status(message)]
    event = parse_ses_record(message)
    return [event] if event else []


def implied_event_id(send_id: str) -> str:
    """The id of the delivery implied by an open/click of ``send_id`` (the same on every read)."""
    return IMPLIED_PREFIX + _event_id("implied", send_id)


def fill_implied(events: list[FeedbackEvent]) -> list[FeedbackEvent]:
    """Out-of-order arrival: an open/click without a delivery implies delivered (at the first such ts)."""
    delivered = {e.send_id for e in events if e.type is FeedbackType.DELIVERED}
    implied: dict[str, FeedbackEvent] = {}
    for event in sorted(events, key=lambda e: e.ts):
        if event.type in (FeedbackType.OPENED, FeedbackType.CLICKED) and event.send_id not in delivered:
            implied.setdefault(
                event.send_id,
                event.model_copy(
                    update={
                        "type": FeedbackType.DELIVERED,
                        "event_id": implied_event_id(event.send_id),
                    }
                ),
            )
    return [*events, *implied.values()]
