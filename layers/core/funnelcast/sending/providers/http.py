"""HTTP provider adapters: Kakao business-message vendors and customer webhooks (stdlib only).

Kakao vendors (AlimTalk for informational notices, brand messages for advertising to Kakao
friends) take JSON with the sender key, the message key (our send id, so a retried request is
de-duplicated by the vendor) and, for AlimTalk, the registered template code. Requests are signed
with HMAC-SHA256 over ``timestamp + "\\n" + body``; 429 and 5xx are retried in-process with
exponential backoff and full jitter (bounded), then handed back to SQS.

Webhooks POST JSON to a configured URL whose host must be on an allowlist and must not resolve to
a private, loopback, link-local or otherwise internal address (SSRF). The connection is made to
the vetted address itself, so a DNS answer that changes between check and connect cannot redirect
the request.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from funnelcast.errors import ConfigurationError, ProviderError
from funnelcast.sending.providers.base import AmbiguousProviderError, ProviderRequest, require_contact
from funnelcast.sending.retry import RetryPolicy

SIGNATURE_HEADER = "X-Funnelcast-Signature"
TIMESTAMP_HEADER = "X-Funnelcast-Timestamp"
DEFAULT_TIMEOUT_SECONDS = 5.0


def hmac_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of ``timestamp + "\\n" + body``: the receiver recomputes it to trust us."""
    mac = hmac.new(secret, timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes
    retry_after: str | None = None


Transport = Callable[[str, bytes, dict[str, str], float], HttpAnswer]


def urllib_transport(url: str, body: bytes, headers: dict[str, str], timeout: float) -> HttpAnswer:
    """POST with urllib; HTTP errors come back as answers, network failures as ``OSError``."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (configured https URL)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return HttpAnswer(response.status, response.read(), response.headers.get("Retry-After"))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read() or b"", exc.headers.get("Retry-After") if exc.headers else None)
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise reason if isinstance(reason, OSError) else OSError(str(reason)) from exc


def _post_with_retries(  # noqa: PLR0917
    channel: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    transport: Transport,
    timeout: float,
    retry: RetryPolicy,
) -> HttpAnswer:
    """The final answer after bounded retries of 429 / 5xx / timeouts; raises retryable when exhausted."""
    last_reason = ""
    for attempt in range(retry.attempts):
        if attempt:
            retry.sleep(retry.delay(attempt))
        try:
            answer = transport(url, body, headers, timeout)
        except TimeoutError:
            last_reason = f"{channel}:timeout"
            continue
        except OSError as exc:
            last_reason = f"{channel}:connection:{type(exc).__name__}"
            continue
        if answer.status == 429 or answer.status >= 500:
            last_reason = f"{channel}:http_{answer.status}"
            continue
        return answer
    raise ProviderError(last_reason, retryable=True)


# Vendor result codes meaning the user cannot get this message on Kakao: fall back to the next channel.
KAKAO_REFUSED_CODES = frozenset(
    {"NOT_FRIEND", "NO_KAKAO_USER", "BLOCKED", "INVALID_PHONE", "NOT_KAKAOTALK_USER", "USER_BLOCKED"}
)


class KakaoHttpProvider:
    """A Korean Kakao business-message vendor over HTTPS (AlimTalk or brand messages).

    Parameters
    ----------
    channel:
        ``kakao_alimtalk`` or ``kakao_brand``.
    base_url, sender_key:
        From settings (``KAKAO_BASE_URL``, ``KAKAO_SENDER_KEY``).
    api_key:
        A callable returning the API key (Powertools Parameters, cached) so it is fetched on first
        send, not at import, and rotated keys are picked up.
    """

    def __init__(
        self,
        channel: str,
        base_url: str,
        sender_key: str,
        api_key: Callable[[], str],
        *,
        transport: Transport = urllib_transport,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if channel not in {"kakao_alimtalk", "kakao_brand"}:
            raise ConfigurationError(f"KakaoHttpProvider serves kakao_alimtalk or kakao_brand, not {channel!r}")
        if not base_url or not sender_key:
            raise ConfigurationError("KAKAO_BASE_URL and KAKAO_SENDER_KEY are required for Kakao channels")
        self.channel = channel
        self.url = f"{base_url.rstrip('/')}/v1/{'alimtalk' if channel == 'kakao_alimtalk' else 'brand'}/send"
        self.sender_key = sender_key
        self._api_key = api_key
        self._transport = transport
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._clock = clock

    def send(self, request: ProviderRequest) -> str:
        phone = require_contact(request.contact.phone, self.channel, "phone")
        message = request.message
        payload: dict[str, Any] = {
            "sender_key": self.sender_key,
            "message_key": request.send_id,  # vendor-side de-duplication of our own retries
            "phone": phone,
            "text": message.body,
        }
        if self.channel == "kakao_alimtalk":
            if not message.template_code:
                raise ProviderError("kakao_alimtalk:no_template_code")
            payload["template_code"] = message.template_code
        elif not request.contact.kakao_friend:
            # Brand messages reach only users who added the channel as a friend.
            raise ProviderError("kakao_brand:not_friend", refused=True)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(self._clock()))
        api_key = self._api_key()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {api_key}",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: hmac_signature(api_key.encode(), timestamp, body),
        }
        answer = _post_with_retries(self.channel, self.url, body, headers, self._transport, self._timeout, self._retry)
        try:
            result = json.loads(answer.body)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            if 200 <= answer.status < 300:
                # Accepted or not? We cannot tell: record unknown rather than risk a duplicate.
                raise AmbiguousProviderError(f"{self.channel}:malformed_response")
            raise ProviderError(f"{self.channel}:http_{answer.status}")
        code = str(result.get("code", "OK" if 200 <= answer.status < 300 else f"http_{answer.status}"))
        if code in KAKAO_REFUSED_CODES:
            raise ProviderError(f"{self.channel}:{code.lower()}", refused=True)
        if not 200 <= answer.status < 300 or code != "OK":
            raise ProviderError(f"{self.channel}:{code.lower()}")
        message_id = result.get("message_id")
        return str(message_id) if message_id is not None else request.send_id


AddressCheck = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]


def public_address_only(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is a public unicast address (the default SSRF rule)."""
    return address.is_global and not address.is_multicast


def allow_loopback_too(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """For tests and the local demo only: public addresses plus loopback (127.0.0.1, ::1)."""
    return address.is_loopback or public_address_only(address)


Resolver = Callable[[str, int], Sequence[str]]


def getaddrinfo_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProviderError(f"webhook:dns:{exc.strerror}", retryable=True) from exc
    return [str(info[4][0]) for info in infos]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to a vetted IP while verifying the certificate for the original host name."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


@dataclass
class WebhookProvider:
    """POST JSON to ``url`` with an HMAC-SHA256 signature; the host must be allowlisted and public."""

    url: str
    allowed_hosts: frozenset[str]
    secret: Callable[[], bytes]
    address_allowed: AddressCheck = public_address_only
    resolver: Resolver = getaddrinfo_resolver
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], float] = time.time
    channel: str = "webhook"

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            raise ConfigurationError(f"WEBHOOK_URL must be an http(s) URL, got {self.url!r}")
        self._scheme = parts.scheme
        self._host = parts.hostname.lower()
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def vetted_address(self) -> str:
        """The first resolved address of the host, after the allowlist and address checks."""
        if self._host not in self.allowed_hosts:
            raise ProviderError(f"webhook:host_not_allowed:{self._host}")
        addresses = list(self.resolver(self._host, self._port))
        if not addresses:
            raise ProviderError("webhook:dns:no_address", retryable=True)
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if not self.address_allowed(address):
                raise ProviderError(f"webhook:address_not_allowed:{address}")
        return addresses[0]

    def _transport(self, address: str) -> Transport:
        def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> HttpAnswer:
            del url  # the pinned connection already knows host, port and path
            connection_type = _PinnedHTTPSConnection if self._scheme == "https" else _PinnedHTTPConnection
            connection = connection_type(self._host, address, self._port, timeout)
            try:
                connection.request("POST", self._path, body=body, headers=headers)
                response = connection.getresponse()
                return HttpAnswer(response.status, response.read(), response.getheader("Retry-After"))
            finally:
                connection.close()

        return post

    def send(self, request: ProviderRequest) -> str:
        address = self.vetted_address()
        message = request.message
        payload = {
            "send_id": request.send_id,
            "campaign_id": request.campaign_id,
            "user_id": request.user_id,
            "purpose": request.purpose.value,
            "body": message.body,
            "subject": message.subject,
            "title": message.title,
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": request.send_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: hmac_signature(self.secret(), timestamp, body),
        }
        answer = _post_with_retries(
            self.channel, self.url, body, headers, self._transport(address), self.timeout, self.retry
        )
        if answer.status in {404, 410}:
            raise ProviderError(f"webhook:http_{answer.status}", refused=True)
        if not 200 <= answer.status < 300:
            raise ProviderError(f"webhook:http_{answer.status}")
        return request.send_id
