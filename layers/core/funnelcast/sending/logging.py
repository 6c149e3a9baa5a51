"""PII masking for the senders' Powertools logs: no email, phone or name in clear, ever."""

from __future__ import annotations

import hashlib
import re
from typing import Any

SENSITIVE_KEYS = frozenset(
    {"email", "phone", "name", "contact", "variables", "body", "text", "message_body", "to", "destination"}
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?\d[\d\- ]{7,}\d")


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def mask_text(text: str) -> str:
    """Email addresses and phone numbers replaced by short fingerprints (joinable, not readable)."""
    text = _EMAIL.sub(lambda m: f"<email:{_fingerprint(m.group())}>", text)
    return _PHONE.sub(lambda m: f"<phone:{_fingerprint(m.group())}>", text)


def mask_value(value: Any, key: str = "") -> Any:
    """``value`` with sensitive keys redacted and free text masked, recursively."""
    if key.lower() in SENSITIVE_KEYS and value not in (None, "", {}, []):
        return "<redacted>"
    if isinstance(value, dict):
        return {k: mask_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def masking_formatter() -> Any:
    """A Powertools formatter that masks every log line before it is written."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter  # noqa: PLC0415

    class PiiMaskingFormatter(LambdaPowertoolsFormatter):
        def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
            return mask_text(super().serialize(mask_value(log)))

    return PiiMaskingFormatter()
