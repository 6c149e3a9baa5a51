"""Hand-built provider payloads shared by the feedback tests (shapes from the SES/SNS/vendor docs)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

SECRET = b"test-feedback-secret"


def ses_record(kind: str, send_id: str, ts: str, *, message_id: str = "ses-1", **detail: Any) -> dict[str, Any]:
    """An SES event publishing record (what SNS carries in ``Message``)."""
    key = {
        "Delivery": "delivery",
        "Open": "open",
        "Click": "click",
        "Bounce": "bounce",
        "Complaint": "complaint",
        "Subscription": "subscription",
        "Send": "send",
    }.get(kind, kind.lower())
    return {
        "eventType": kind,
        "mail": {"timestamp": ts, "messageId": message_id, "tags": {"send_id": [send_id], "campaign_id": ["c1"]}},
        key: {"timestamp": ts, **detail},
    }


def sns_envelope(message: dict[str, Any]) -> str:
    """The SQS body of an SNS -> SQS subscription without raw delivery."""
    return json.dumps({"Type": "Notification", "MessageId": "sns-1", "Message": json.dumps(message)})


def opt_out(send_id: str, ts: str) -> dict[str, Any]:
    return ses_record("Subscription", send_id, ts, newTopicPreferences={"unsubscribeAll": True})


def push_status(send_id: str, status: str, ts: str, message_id: str = "push-1") -> dict[str, Any]:
    return {
        "notification": {"messageId": message_id, "timestamp": ts},
        "delivery": {"token": "t"},
        "status": status,
        "send_id": send_id,
    }


def vendor_body(*reports: dict[str, Any]) -> bytes:
    return json.dumps({"reports": list(reports)}, ensure_ascii=False).encode()


def vendor_report(
    report_id: str, send_id: str, status: str, ts: datetime | str, channel: str = "sms"
) -> dict[str, Any]:
    return {
        "id": report_id,
        "send_id": send_id,
        "status": status,
        "ts": ts.isoformat() if isinstance(ts, datetime) else ts,
        "channel": channel,
    }


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
