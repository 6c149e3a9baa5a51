"""In-memory fake providers for every channel, with injectable faults (tests and the demo).

A fake records each accepted message in its ``outbox``. Faults, drawn from a seeded RNG:
``retryable_rate`` raises a retryable error before accepting, ``refusal_rate`` refuses the user.
``after_accept`` is called AFTER the message is in the outbox and BEFORE the worker gets the
answer: raising there simulates a worker that dies between the provider call and its record.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from funnelcast.errors import ProviderError
from funnelcast.sending.providers.base import ProviderRequest
from funnelcast.settings import CHANNELS


@dataclass(frozen=True)
class OutboxEntry:
    """One accepted message as the customer would see it."""

    channel: str
    send_id: str
    user_id: int | str
    campaign_id: str
    purpose: str
    body: str
    subject: str | None
    title: str | None
    message_id: str


class SimulatedCrashError(Exception):
    """Raised by an ``after_accept`` hook to play a worker dying after the provider accepted."""


_CONTACT_OF = {
    "email": "email",
    "sms": "phone",
    "push": "push_endpoint",
    "kakao_alimtalk": "phone",
    "kakao_brand": "phone",
    "webhook": None,
}


@dataclass
class FakeProvider:
    """A provider that keeps what it accepts; reachability follows the recipient's contact."""

    channel: str
    retryable_rate: float = 0.0
    refusal_rate: float = 0.0
    seed: int = 0
    after_accept: Callable[[OutboxEntry], None] | None = None
    refuse_users: frozenset[int | str] = frozenset()
    outbox: list[OutboxEntry] = field(default_factory=list)
    attempts: list[tuple[str, int | str, str]] = field(default_factory=list)  # (send_id, user, result)
    calls: int = 0

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}")
        self._rng = random.Random(self.seed)  # noqa: S311 (fault injection, not cryptography)
        self._lock = threading.Lock()

    def send(self, request: ProviderRequest) -> str:
        with self._lock:
            self.calls += 1
            draw_retry, draw_refuse = self._rng.random(), self._rng.random()
        try:
            entry = self._accept(request, draw_retry, draw_refuse)
        except ProviderError as exc:
            with self._lock:
                self.attempts.append((request.send_id, request.user_id, exc.reason))
            raise
        with self._lock:
            self.attempts.append((request.send_id, request.user_id, "accepted"))
        if self.after_accept is not None:
            self.after_accept(entry)  # accepted, but the worker has not heard back yet
        return entry.message_id

    def _accept(self, request: ProviderRequest, draw_retry: float, draw_refuse: float) -> OutboxEntry:
        contact_field = _CONTACT_OF[self.channel]
        if contact_field is not None and not getattr(request.contact, contact_field):
            raise ProviderError(f"{self.channel}:no_{contact_field}", refused=True)
        if self.channel == "kakao_brand" and not request.contact.kakao_friend:
            raise ProviderError("kakao_brand:not_friend", refused=True)
        if request.user_id in self.refuse_users or draw_refuse < self.refusal_rate:
            raise ProviderError(f"{self.channel}:undeliverable", refused=True)
        if draw_retry < self.retryable_rate:
            raise ProviderError(f"{self.channel}:throttled", retryable=True)
        message = request.message
        entry = OutboxEntry(
            channel=self.channel,
            send_id=request.send_id,
            user_id=request.user_id,
            campaign_id=request.campaign_id,
            purpose=request.purpose.value,
            body=message.body,
            subject=message.subject,
            title=message.title,
            message_id=f"fake-{self.channel}-{request.send_id}",
        )
        with self._lock:
            self.outbox.append(entry)
        return entry

    def send_ids(self) -> list[str]:
        """Send ids in the outbox, in acceptance order (duplicates kept: tests look for them)."""
        with self._lock:
            return [entry.send_id for entry in self.outbox]


def fake_providers(channels: Iterable[str] = CHANNELS, **faults: object) -> dict[str, FakeProvider]:
    """One fake per channel, all with the same fault settings (``retryable_rate=0.1`` ...)."""
    return {channel: FakeProvider(channel, **faults) for channel in channels}  # type: ignore[arg-type]
