"""Hand-built rule objects, features and fakes for the planner's unit tests (no AWS)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from funnelcast.caps.policy import UserCapState
from funnelcast.rules.models import Campaign, Policy

# Tuesday 2026-12-01 10:00 in Seoul (01:00 UTC): inside 09:00-20:00 and outside the night ban.
T = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def make_campaign(**changes: Any) -> Campaign:
    """An advertising Kakao-brand-then-SMS campaign; ``changes`` override any key."""
    data: dict[str, Any] = {
        "kind": "campaign",
        "id": "promo_a",
        "name": "Promo A",
        "funnel_stage": "revenue",
        "audience": {"segment": "everyone"},
        "schedule": {"cron": "0 10 * * ? *", "timezone": "Asia/Seoul"},
        "purpose": "advertising",
        "topic": "promo",
        "priority": 50,
        "channels": ["kakao_brand", "sms"],
        "variants": [
            {"id": "a", "weight": 1, "messages": {"kakao_brand": {"template": "{{ name }}"}, "sms": {"template": "A"}}},
            {"id": "b", "weight": 1, "messages": {"kakao_brand": {"template": "B"}, "sms": {"template": "B"}}},
        ],
    }
    data.update(changes)
    if "channels" in changes and "variants" not in changes:
        message = {"template": "{{ name }} hi", "subject": "s", "template_code": "T1"}
        data["variants"] = [{"id": "a", "weight": 1, "messages": {c: message for c in changes["channels"]}}]
    return Campaign.model_validate(data)


def make_policy(caps: Sequence[Mapping[str, Any]] = (), **changes: Any) -> Policy:
    return Policy.model_validate({"kind": "policy", "caps": list(caps), **changes})


def make_features(n: int, **columns: Any) -> pd.DataFrame:
    """``n`` Seoul customers who can receive every channel and consented to everything but night ads."""
    frame = pd.DataFrame(
        {
            "user_id": list(range(1, n + 1)),
            "timezone": ["Asia/Seoul"] * n,
            "email": [f"u{i}@example.com" for i in range(1, n + 1)],
            "phone": [f"+8210555{i:05d}" for i in range(1, n + 1)],
            "push_endpoint": [f"arn:aws:sns:ap-northeast-2:1:endpoint/GCM/app/{i}" for i in range(1, n + 1)],
            "kakao_friend": [True] * n,
            "consent_email": [True] * n,
            "consent_sms": [True] * n,
            "consent_push": [True] * n,
            "consent_kakao": [True] * n,
            "consent_night_ads": [False] * n,
            "name": [f"고객{i}" for i in range(1, n + 1)],
        }
    )
    for name, value in columns.items():
        frame[name] = value
    return frame


def audience_of(features: pd.DataFrame, excluded: Sequence[object] = ()) -> pd.DataFrame:
    frame = features.copy()
    frame["excluded"] = frame["user_id"].isin(list(excluded))
    return frame


@dataclass
class FakeUsage:
    """``CapStore.usage_of`` stand-in that keeps what each call asked for."""

    states: dict[Any, UserCapState] = field(default_factory=dict)
    calls: list[dict[Any, set[str]]] = field(default_factory=list)

    def usage_of(self, wanted: Mapping[Any, Collection[str]], *, threads: int = 1) -> dict[Any, UserCapState]:
        del threads
        self.calls.append({user: set(weeks) for user, weeks in wanted.items()})
        return {user: state for user, state in self.states.items() if user in wanted}


@dataclass
class FakeQueues:
    """``JobQueue`` stand-in keeping every body per channel."""

    sent: dict[str, list[str]] = field(default_factory=dict)

    def send_jobs(self, channel: str, bodies: Sequence[str]) -> int:
        self.sent.setdefault(channel, []).extend(bodies)
        return (len(bodies) + 9) // 10


@dataclass
class FakeWaits:
    scheduled: dict[str, datetime] = field(default_factory=dict)

    def schedule_release(self, key: str, at: datetime) -> None:
        self.scheduled.setdefault(key, at)
