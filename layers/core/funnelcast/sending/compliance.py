"""Korean advertising compliance and message-size rules, as pure functions.

- Advertising messages start with the policy's ad label ("(광고)") and, on SMS and Kakao, end with
  the free opt-out text (정보통신망법 §50).
- Advertising email carries ``List-Unsubscribe`` / ``List-Unsubscribe-Post`` (RFC 8058 one-click)
  pointing at a URL whose token is an HMAC of the send id, so the feedback function can trust it
  without a database read.
- Korean carriers take an SMS up to 90 bytes of EUC-KR; longer texts go as LMS (with a subject) up
  to 2,000 bytes; anything longer cannot be sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from funnelcast.errors import TemplateRenderError
from funnelcast.rules.models import Compliance, Purpose

SMS_MAX_BYTES = 90
LMS_MAX_BYTES = 2000
LMS_SUBJECT_MAX_BYTES = 40
_TOKEN_DIGEST_CHARS = 22  # 132 bits of HMAC-SHA256: unguessable, short enough for a URL
OPT_OUT_CHANNELS = frozenset({"sms", "kakao_alimtalk", "kakao_brand"})


def labelled_text(text: str, *, channel: str, purpose: Purpose | str, compliance: Compliance) -> str:
    """``text`` with the ad label prefixed and, for SMS / Kakao, the opt-out text appended.

    Informational messages are returned unchanged. A label the author already typed at the start
    is not doubled.
    """
    if Purpose(purpose) is not Purpose.ADVERTISING:
        return text
    body = text.strip()
    label = compliance.ad_label.strip()
    if label and not body.startswith(label):
        body = f"{label} {body}"
    opt_out = compliance.opt_out_text.strip()
    if channel in OPT_OUT_CHANNELS and opt_out and not body.endswith(opt_out):
        body = f"{body}\n{opt_out}"
    return body


def euc_kr_length(text: str) -> int:
    """Bytes of ``text`` as Korean carriers count them (CP949; an unencodable character counts 2)."""
    try:
        return len(text.encode("cp949"))
    except UnicodeEncodeError:
        total = 0
        for char in text:
            try:
                total += len(char.encode("cp949"))
            except UnicodeEncodeError:
                total += 2
        return total


@dataclass(frozen=True)
class SmsShape:
    """How a text goes out: ``SMS`` (short, no subject) or ``LMS`` (long, with a subject)."""

    kind: Literal["SMS", "LMS"]
    body: str
    subject: str | None
    size_bytes: int


def shape_sms(body: str, subject: str | None = None) -> SmsShape:
    """Classify ``body`` as SMS or LMS by its EUC-KR size.

    Raises
    ------
    TemplateRenderError
        When the text exceeds the 2,000-byte LMS limit (reason ``sms_too_long``).
    """
    size = euc_kr_length(body)
    if size <= SMS_MAX_BYTES:
        return SmsShape("SMS", body, None, size)
    if size > LMS_MAX_BYTES:
        raise TemplateRenderError(f"sms_too_long: {size} bytes EUC-KR exceeds the LMS limit of {LMS_MAX_BYTES}")
    title = (subject or body.splitlines()[0]).strip()
    while euc_kr_length(title) > LMS_SUBJECT_MAX_BYTES:
        title = title[:-1]
    return SmsShape("LMS", body, title, size)


def sign_send_id(send_id: str, secret: bytes) -> str:
    """``<send_id>.<hmac>``: the unsubscribe token of one send (URL-safe)."""
    digest = hmac.new(secret, send_id.encode(), hashlib.sha256).digest()
    mac = base64.urlsafe_b64encode(digest).decode().rstrip("=")[:_TOKEN_DIGEST_CHARS]
    return f"{send_id}.{mac}"


def verify_token(token: str, secret: bytes) -> str | None:
    """The send id inside ``token`` when its signature is valid, else ``None`` (constant-time compare)."""
    send_id, _, _mac = token.partition(".")
    if not send_id:
        return None
    return send_id if hmac.compare_digest(sign_send_id(send_id, secret), token) else None


def unsubscribe_url(base_url: str, send_id: str, secret: bytes) -> str:
    """``base_url`` with the signed token as query parameter ``t``."""
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}t={quote(sign_send_id(send_id, secret), safe='.')}"


def list_unsubscribe_headers(url: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click unsubscribe headers for ``url``."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
