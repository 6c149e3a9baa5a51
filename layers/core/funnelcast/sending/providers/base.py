"""What every provider adapter takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from funnelcast.errors import ProviderError
from funnelcast.jobs import Contact
from funnelcast.rules.models import Purpose
from funnelcast.sending.render import RenderedMessage


@dataclass(frozen=True)
class ProviderRequest:
    """One message to one user on one channel."""

    send_id: str
    campaign_id: str
    user_id: int | str
    purpose: Purpose
    contact: Contact
    message: RenderedMessage


class Provider(Protocol):
    """A channel adapter: returns the provider's message id or raises ``ProviderError``."""

    channel: str

    def send(self, request: ProviderRequest) -> str: ...


class AmbiguousProviderError(ProviderError):
    """The provider may or may not have accepted the message (e.g. an unreadable 200 answer).

    The worker records such a send as ``unknown`` and never resends it (at most once).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False, refused=False)


def require_contact(value: str | None, channel: str, what: str) -> str:
    """The contact value, or a refusal when the user has none for this channel."""
    if not value:
        raise ProviderError(f"{channel}:no_{what}", refused=True)
    return value
