"""Liquid rendering of a variant's message for one recipient, with compliance applied.

The environment is strict (a missing variable fails that one send with ``failed:template`` unless
the template says ``| default: ...``) and sandboxed: variables are reduced to JSON data (dicts,
lists, strings, numbers, booleans, null) before rendering, so a template can never reach into a
Python object, and loops and output are bounded. Compiled templates are cached per
``(rules_hash, campaign, variant, channel, part)``.

``liquid`` is imported on first render, not at import: it costs ~170 ms and the sender's cold
import budget is 150 ms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from funnelcast.errors import TemplateRenderError
from funnelcast.rules.models import Channel, Compliance, Message, Purpose
from funnelcast.sending.compliance import (
    labelled_text,
    list_unsubscribe_headers,
    shape_sms,
    unsubscribe_url,
)

LOOP_ITERATION_LIMIT = 10_000
OUTPUT_LIMIT_CHARS = 100_000


@dataclass(frozen=True)
class RenderedMessage:
    """What a provider sends: the compliant body plus per-channel extras."""

    channel: str
    body: str
    subject: str | None = None
    title: str | None = None
    template_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    sms_kind: str | None = None  # "SMS" or "LMS" for the sms channel


@dataclass(frozen=True)
class RenderRequest:
    """Everything rendering needs about one send."""

    rules_hash: str
    campaign_id: str
    variant_id: str
    channel: str
    purpose: Purpose
    send_id: str
    message: Message
    compliance: Compliance
    variables: Mapping[str, Any]
    link: str | None = None


@lru_cache(maxsize=1)
def _environment() -> Any:
    from liquid import Environment, StrictDefaultUndefined  # noqa: PLC0415  (170 ms: first render only)

    class SandboxedEnvironment(Environment):
        loop_iteration_limit = LOOP_ITERATION_LIMIT
        output_stream_limit = OUTPUT_LIMIT_CHARS

    return SandboxedEnvironment(undefined=StrictDefaultUndefined)


@lru_cache(maxsize=1024)
def _compiled(key: tuple[str, str, str, str, str], source: str) -> Any:
    """The parsed template of one message part; the key keeps rule sets apart."""
    try:
        return _environment().from_string(source)
    except Exception as exc:  # liquid raises LiquidSyntaxError and friends
        part = "/".join(key[1:])
        raise TemplateRenderError(f"template {part} does not parse: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _as_json_data(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Variables as plain JSON data: the sandbox boundary (no Python object reaches a template)."""
    try:
        data: dict[str, Any] = json.loads(json.dumps(dict(variables), default=str))
    except (TypeError, ValueError) as exc:
        raise TemplateRenderError(f"variables are not JSON data: {exc}") from exc
    return data


def _render_part(request: RenderRequest, part: str, source: str, data: dict[str, Any]) -> str:
    key = (request.rules_hash, request.campaign_id, request.variant_id, request.channel, part)
    template = _compiled(key, source)
    try:
        return str(template.render(**data))
    except Exception as exc:  # UndefinedError, limits, filter errors: that one send fails
        raise TemplateRenderError(f"{part}: {_first_line(exc)}") from exc


def render_message(
    request: RenderRequest, *, unsubscribe_base_url: str = "", unsubscribe_secret: bytes = b""
) -> RenderedMessage:
    """Render and make compliant the message of one recipient.

    Raises
    ------
    TemplateRenderError
        Missing variable without ``default``, a template that does not parse, an SMS over the LMS
        limit, or advertising email without an unsubscribe URL.
    """
    data = _as_json_data(request.variables)
    data.update(campaign_id=request.campaign_id, variant_id=request.variant_id)
    if request.link is not None:
        data["link"] = request.link
    message = request.message
    body = _render_part(request, "template", message.template, data)
    subject = _render_part(request, "subject", message.subject, data) if message.subject else None
    title = _render_part(request, "title", message.title, data) if message.title else None
    channel = request.channel
    advertising = Purpose(request.purpose) is Purpose.ADVERTISING
    headers: dict[str, str] = {}
    if channel == Channel.EMAIL.value:
        if subject is None:
            raise TemplateRenderError("email message has no subject")
        subject = labelled_text(subject, channel=channel, purpose=request.purpose, compliance=request.compliance)
        if advertising:
            if not unsubscribe_base_url or not unsubscribe_secret:
                raise TemplateRenderError("advertising email needs UNSUBSCRIBE_BASE_URL and the feedback secret")
            url = unsubscribe_url(unsubscribe_base_url, request.send_id, unsubscribe_secret)
            headers = list_unsubscribe_headers(url)
        return RenderedMessage(channel, body, subject=subject, headers=headers)
    if channel == Channel.PUSH.value and title is not None:
        # The label goes where the user sees it first: the notification title.
        title = labelled_text(title, channel=channel, purpose=request.purpose, compliance=request.compliance)
    else:
        body = labelled_text(body, channel=channel, purpose=request.purpose, compliance=request.compliance)
    if channel == Channel.SMS.value:
        shape = shape_sms(body, subject or title)
        return RenderedMessage(channel, shape.body, subject=shape.subject, sms_kind=shape.kind)
    return RenderedMessage(channel, body, subject=subject, title=title, template_code=message.template_code)
