"""Feedback ingestion service: what the ``ingest_feedback`` handler calls for SQS batches and HTTP requests.

No pandas at import: vendor delivery reports and SES deliveries/opens are stored without it. Only a
batch holding a reaction that changes who may be messaged (``unsubscribed``, ``complaint``) updates
``suppression/latest.parquet`` at once (pandas, imported then), reading only those sends' delivery
records; the scheduled report rebuilds it from the whole log every day, which is when
``suppression.ignored`` (built from deliveries and opens) moves.

Function URL routes (one URL, told apart by the request):

* ``GET ?t=<token>``: the email's unsubscribe link; answers a small page with a confirm button
  (mail scanners follow links, so a GET never unsubscribes).
* ``POST ?t=<token>``: RFC 8058 one-click unsubscribe (``List-Unsubscribe=One-Click``) or that button.
* ``POST`` with ``X-Funnelcast-Signature: sha256=<hex HMAC-SHA256 of the raw body>``: a vendor
  delivery report (SMS / Kakao / webhook), see :func:`funnelcast.feedback.normalize.parse_vendor_body`.

Answers: 200 stored; 400 oversized (> 256 KB) / non-JSON / invalid body, nothing stored; 401 bad or
missing signature or token, logged without the body; 405 other methods.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from funnelcast.feedback.ingest import write_events
from funnelcast.feedback.normalize import (
    FeedbackEvent,
    FeedbackInputError,
    FeedbackType,
    SignatureError,
    check_body_size,
    parse_unsubscribe_token,
    parse_vendor_body,
    verify_signature,
)
from funnelcast.storage import ObjectStore

if TYPE_CHECKING:
    from funnelcast.settings import Settings

SIGNATURE_HEADER = "x-funnelcast-signature"
#: Reactions that change who may be messaged: the suppression snapshot is rebuilt in the same batch.
REBUILD_TYPES = frozenset({FeedbackType.UNSUBSCRIBED, FeedbackType.COMPLAINT})

Log = Callable[[str, dict[str, Any]], None]


def _no_log(message: str, extra: dict[str, Any]) -> None:
    del message, extra


@dataclass
class FeedbackDependencies:
    """Stores, the signing secret (fetched lazily, cached by Powertools Parameters) and a clock."""

    data: ObjectStore
    rules: ObjectStore
    secret: Callable[[], bytes]
    clock: Callable[[], datetime]
    log: Log = _no_log
    warn: Log = _no_log

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedbackDependencies:
        """S3 stores of the data and rules buckets; the secret from SSM ``FEEDBACK_SECRET_PARAMETER``."""
        from funnelcast.storage import S3Store  # noqa: PLC0415

        settings.require("data_bucket", "rules_bucket", "feedback_secret_parameter")
        name = settings.feedback_secret_parameter

        def secret() -> bytes:
            from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

            # Cached for 5 minutes by Powertools: a rotated secret is picked up without a redeploy.
            return str(parameters.get_parameter(name, decrypt=True, max_age=300)).encode()

        return cls(
            data=S3Store(settings.data_bucket),
            rules=S3Store(settings.rules_bucket),
            secret=secret,
            clock=lambda: datetime.now(UTC),
        )


class StoredBatch(BaseModel):
    """What one batch left behind: object keys, counts per type, and the suppression rebuild if any."""

    model_config = ConfigDict(frozen=True)
    keys: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    rebuilt: bool = False
    suppression_rows: int = 0
    unknown_send_ids: int = 0


def batch_id(events: list[FeedbackEvent]) -> str:
    """A content hash of the event ids: a retried batch overwrites its own object instead of adding one."""
    digest = hashlib.sha256("\n".join(sorted(e.event_id for e in events)).encode()).hexdigest()
    return digest[:24]


def store_events(events: list[FeedbackEvent], deps: FeedbackDependencies) -> StoredBatch:
    """Write ``events`` as JSONL (one object per day) and rebuild suppression when a reaction came in."""
    if not events:
        return StoredBatch()
    keys = write_events(deps.data, events, batch_id=batch_id(events))
    counts = dict(Counter(e.type.value for e in events))
    if not any(e.type in REBUILD_TYPES for e in events):
        return StoredBatch(keys=keys, counts=counts)
    rows, unknown = apply_at_once([e for e in events if e.type in REBUILD_TYPES], deps)
    return StoredBatch(keys=keys, counts=counts, rebuilt=True, suppression_rows=rows, unknown_send_ids=unknown)


def apply_at_once(events: list[FeedbackEvent], deps: FeedbackDependencies) -> tuple[int, int]:
    """Add ``events`` to ``suppression/latest.parquet`` with the active policy; (rows, unknown send ids)."""
    from funnelcast.activation import load_active_ruleset  # noqa: PLC0415
    from funnelcast.feedback.ingest import events_frame  # noqa: PLC0415 (pandas)
    from funnelcast.feedback.suppression import apply_reactions  # noqa: PLC0415

    policy = load_active_ruleset(deps.rules).policy.suppression
    frame, unknown = apply_reactions(deps.data, events_frame(events), policy, now=deps.clock())
    deps.log("suppression updated", {"rows": len(frame), "unknown_send_ids": unknown})
    return len(frame), unknown


# --- HTTP (Function URL) ------------------------------------------------------------------------


class HttpRequest(BaseModel):
    """The parts of a Function URL event (payload 2.0) the service reads; header names lower-cased."""

    model_config = ConfigDict(frozen=True)
    method: str
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: bytes = b""
    source_ip: str = ""

    @classmethod
    def from_function_url(cls, event: dict[str, Any]) -> HttpRequest:
        """Parse a Function URL event; a body that is not valid base64 raises ``FeedbackInputError``."""
        import base64  # noqa: PLC0415
        import binascii  # noqa: PLC0415

        http = event.get("requestContext", {}).get("http", {})
        raw = event.get("body") or ""
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise FeedbackInputError(f"body is not valid base64: {exc}") from exc
        else:
            body = raw.encode()
        return cls(
            method=str(http.get("method", "GET")).upper(),
            query={str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()},
            headers={str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()},
            body=body,
            source_ip=str(http.get("sourceIp", "")),
        )


class HttpResponse(BaseModel):
    model_config = ConfigDict(frozen=True)
    status: int
    body: str
    content_type: str = "application/json"
    stored: StoredBatch | None = None

    def to_function_url(self) -> dict[str, Any]:
        return {"statusCode": self.status, "headers": {"Content-Type": self.content_type}, "body": self.body}


def _json(status: int, payload: dict[str, Any], stored: StoredBatch | None = None) -> HttpResponse:
    return HttpResponse(status=status, body=json.dumps(payload, ensure_ascii=False), stored=stored)


def _page(status: int, title: str, text: str, form: str = "") -> HttpResponse:
    body = (
        f"<!doctype html><html lang='ko'><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:32em;margin:3em auto'><h1>{escape(title)}</h1>"
        f"<p>{escape(text)}</p>{form}</body></html>"
    )
    return HttpResponse(status=status, body=body, content_type="text/html; charset=utf-8")


def handle_http(request: HttpRequest, deps: FeedbackDependencies) -> HttpResponse:
    """Route one Function URL request (see the module docstring); never raises for bad input."""
    token = request.query.get("t")
    if token is not None:
        return _unsubscribe(request, token, deps)
    if request.method != "POST":
        return _json(405, {"error": f"method {request.method} is not allowed; POST a signed report"})
    try:
        check_body_size(request.body)
    except FeedbackInputError as exc:
        deps.warn("feedback request refused", {"status": 400, "reason": str(exc), "source_ip": request.source_ip})
        return _json(400, {"error": str(exc)})
    try:
        verify_signature(request.body, request.headers.get(SIGNATURE_HEADER), deps.secret())
    except SignatureError as exc:
        # Never the body: it may hold phone numbers, and it is not trusted.
        deps.warn(
            "feedback signature refused",
            {"status": 401, "reason": str(exc), "bytes": len(request.body), "source_ip": request.source_ip},
        )
        return _json(401, {"error": "signature check failed"})
    try:
        events = parse_vendor_body(request.body)
    except FeedbackInputError as exc:
        deps.warn("feedback report refused", {"status": 400, "reason": str(exc), "source_ip": request.source_ip})
        return _json(400, {"error": str(exc)})
    stored = store_events(events, deps)
    return _json(200, {"accepted": len(events)}, stored)


def _unsubscribe(request: HttpRequest, token: str, deps: FeedbackDependencies) -> HttpResponse:
    try:
        event = parse_unsubscribe_token(token, deps.secret(), now=deps.clock())
    except SignatureError as exc:
        deps.warn("unsubscribe token refused", {"status": 401, "reason": str(exc), "source_ip": request.source_ip})
        return _page(401, "수신거부 링크 오류", "링크가 올바르지 않습니다. 메일의 링크를 그대로 열어 주세요.")
    if request.method == "GET":
        form = (
            f"<form method='post' action='?t={escape(token)}'><input type='hidden' name='List-Unsubscribe' "
            "value='One-Click'><button type='submit'>수신거부 (Unsubscribe)</button></form>"
        )
        return _page(200, "수신거부", "아래 버튼을 누르면 이 채널의 광고 메시지 수신이 중단됩니다.", form)
    if request.method != "POST":
        return _json(405, {"error": f"method {request.method} is not allowed"})
    stored = store_events([event], deps)
    page = _page(200, "수신거부 완료", "광고 메시지 수신거부가 처리되었습니다. (You are unsubscribed.)")
    return page.model_copy(update={"stored": stored})
