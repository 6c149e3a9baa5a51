"""Simulated customers: how people react to the messages the fake providers accepted.

Every accepted message may be delivered, opened, clicked, followed by a purchase, an unsubscribe
or (email) a complaint, at plausible delays. Draws come from a RNG seeded by ``(seed, send_id)``,
so a message gets the same reactions whatever order the workers sent things in.

Reactions travel the way they would in AWS:

* email: SES event-publishing records published to ``SesEventsTopic`` (SNS -> FeedbackQueue);
* push: SNS delivery-status records put on ``FeedbackQueue``;
* sms / Kakao / webhook: signed vendor reports to the feedback Function URL;
* purchases: rows appended to the customers' event export (``input/events/dt=.../``).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Per channel: P(open), P(click | open or, for sms/webhook, directly), P(purchase | click).
OPEN_RATE = {"email": 0.32, "push": 0.14, "kakao_brand": 0.45, "kakao_alimtalk": 0.6, "sms": 0.0, "webhook": 0.0}
CLICK_RATE = {"email": 0.28, "push": 0.35, "kakao_brand": 0.3, "kakao_alimtalk": 0.25, "sms": 0.06, "webhook": 0.0}
PURCHASE_AFTER_CLICK = 0.22
UNSUBSCRIBE_RATE = 0.012  # advertising messages only
COMPLAINT_RATE = 0.002  # email only
BOUNCE_RATE = 0.01  # email only


@dataclass(frozen=True, order=True)
class Reaction:
    """One thing a customer does at ``at`` about one message."""

    at: datetime
    kind: str  # delivered | opened | clicked | purchase | unsubscribed | complaint | bounced
    send_id: str
    channel: str
    user_id: str
    campaign_id: str
    amount: float = 0.0


@dataclass
class SimulatedCustomers:
    """Queue of future reactions; :meth:`due` pops those whose time has come."""

    seed: int = 0
    _pending: list[Reaction] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def react(
        self, *, send_id: str, channel: str, user_id: object, campaign_id: str, purpose: str, at: datetime
    ) -> None:
        """Draw the reactions to one accepted message sent at ``at``."""
        digest = hashlib.sha256(f"{self.seed}\x1f{send_id}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        user = str(user_id)

        def add(kind: str, when: datetime, amount: float = 0.0) -> None:
            heapq.heappush(self._pending, Reaction(when, kind, send_id, channel, user, campaign_id, amount))

        if channel == "email" and rng.random() < BOUNCE_RATE:
            add("bounced", at + timedelta(seconds=20))
            return
        add("delivered", at + timedelta(seconds=5 + rng.random() * 25))
        engaged_at = at + timedelta(minutes=2 + rng.expovariate(1 / 90))
        opened = rng.random() < OPEN_RATE.get(channel, 0.0)
        if opened:
            add("opened", engaged_at)
        if (opened or OPEN_RATE.get(channel, 0.0) == 0.0) and rng.random() < CLICK_RATE.get(channel, 0.0):
            clicked_at = engaged_at + timedelta(seconds=30 + rng.random() * 120)
            add("clicked", clicked_at)
            if rng.random() < PURCHASE_AFTER_CLICK:
                amount = float(round(rng.lognormvariate(10.3, 0.6), -2))
                add("purchase", clicked_at + timedelta(minutes=rng.expovariate(1 / 180)), amount)
        if purpose == "advertising" and rng.random() < UNSUBSCRIBE_RATE:
            add("unsubscribed", engaged_at + timedelta(minutes=1))
        elif channel == "email" and rng.random() < COMPLAINT_RATE:
            add("complaint", engaged_at + timedelta(minutes=5))

    def due(self, now: datetime) -> list[Reaction]:
        """Reactions with ``at <= now``, in time order."""
        ready: list[Reaction] = []
        while self._pending and self._pending[0].at <= now:
            reaction = heapq.heappop(self._pending)
            self.counts[reaction.kind] = self.counts.get(reaction.kind, 0) + 1
            ready.append(reaction)
        return ready

    def next_at(self) -> datetime | None:
        return self._pending[0].at if self._pending else None

    def pending(self) -> int:
        return len(self._pending)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SES_KIND = {
    "delivered": ("Delivery", "delivery"),
    "opened": ("Open", "open"),
    "clicked": ("Click", "click"),
    "bounced": ("Bounce", "bounce"),
    "complaint": ("Complaint", "complaint"),
    "unsubscribed": ("Subscription", "subscription"),
}


def ses_record(reaction: Reaction, source: str) -> dict[str, Any]:
    """An SES event-publishing record, as SES would publish it to the configuration set's topic."""
    event_type, detail_key = _SES_KIND[reaction.kind]
    detail: dict[str, Any] = {"timestamp": _iso(reaction.at)}
    if reaction.kind == "clicked":
        detail["link"] = "https://funnelcast.example/l"
    if reaction.kind == "bounced":
        detail.update({"bounceType": "Permanent", "bounceSubType": "General"})
    if reaction.kind == "unsubscribed":
        detail["newTopicPreferences"] = {"unsubscribeAll": True, "topicSubscriptionStatus": []}
    return {
        "eventType": event_type,
        "mail": {
            "timestamp": _iso(reaction.at),
            "source": source,
            "messageId": f"fake-email-{reaction.send_id}",
            "destination": [f"user{reaction.user_id}@example.com"],
            "tags": {
                "send_id": [reaction.send_id],
                "user_id": [reaction.user_id],
                "campaign_id": [reaction.campaign_id],
            },
        },
        detail_key: detail,
    }


def push_status_record(reaction: Reaction) -> dict[str, Any]:
    """An SNS mobile-push delivery-status record (only deliveries are reported by SNS)."""
    return {
        "send_id": reaction.send_id,
        "status": "SUCCESS",
        "notification": {"messageId": f"fake-push-{reaction.send_id}", "timestamp": _iso(reaction.at)},
        "delivery": {"statusCode": 200, "providerResponse": "{}", "dwellTimeMs": 40},
    }


def vendor_report(reaction: Reaction) -> dict[str, Any]:
    """One row of a vendor's delivery/engagement report (SMS, Kakao, webhook)."""
    return {
        "id": hashlib.sha256(f"{reaction.send_id}|{reaction.kind}".encode()).hexdigest()[:20],
        "send_id": reaction.send_id,
        "status": reaction.kind,
        "ts": _iso(reaction.at),
        "channel": reaction.channel,
        "user_id": reaction.user_id,
    }


def signed_function_url_event(body: dict[str, Any], secret: str, url_id: str) -> dict[str, Any]:
    """A Lambda Function URL (payload 2.0) POST event carrying ``body`` with its HMAC signature."""
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    signature = hmac.new(secret.encode(), raw.encode(), hashlib.sha256).hexdigest()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "x-funnelcast-signature": f"sha256={signature}"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": f"{url_id}.lambda-url.ap-northeast-2.on.aws",
            "http": {
                "method": "POST",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "demo",
            },
            "requestId": hashlib.sha256(raw.encode()).hexdigest()[:16],
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": 0,
        },
        "body": raw,
        "isBase64Encoded": False,
    }
