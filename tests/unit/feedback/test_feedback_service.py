"""The feedback service behind the Function URL and the SQS batch, on local folders (no AWS)."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from feedback_payloads import SECRET, sign, vendor_body, vendor_report

from funnelcast.feedback.normalize import MAX_BODY_BYTES
from funnelcast.feedback.service import FeedbackDependencies, HttpRequest, batch_id, handle_http, store_events
from funnelcast.feedback.suppression import SUPPRESSION_KEY
from funnelcast.rules.models import Policy, RuleSet
from funnelcast.sending.compliance import sign_send_id
from funnelcast.storage import LocalStore

NOW = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
PHONE = "+821012345678"


class Logs:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, message: str, extra: dict[str, Any]) -> None:
        self.lines.append((message, extra))


@pytest.fixture
def logs() -> Logs:
    return Logs()


@pytest.fixture
def deps(tmp_path: Path, logs: Logs) -> FeedbackDependencies:
    """Given an active rule set (default policy: unsubscribe turns that channel off) and one sent SMS + email."""
    rules, data = LocalStore(tmp_path / "rules"), LocalStore(tmp_path / "data")
    ruleset = RuleSet(campaigns=[], policy=Policy(kind="policy"))
    rules.put_bytes(f"rulesets/{ruleset.rules_hash}/bundle.json", ruleset.canonical_json())
    rules.put_bytes("active.json", json.dumps({"rules_hash": ruleset.rules_hash}).encode())
    rows = [
        {
            "send_id": sid,
            "run_id": "r",
            "campaign_id": "c1",
            "user_id": uid,
            "variant_id": "a",
            "channel": ch,
            "status": "sent",
            "sent_at": "2026-11-02T01:00:00+00:00",
            "local_sent_at": "2026-11-02T10:00:00",
            "purpose": "advertising",
            "topic": "promo",
        }
        for sid, uid, ch in [("s1", 7, "sms"), ("m1", 8, "email")]
    ]
    data.put_bytes("deliveries/dt=2026-11-02/sms-1.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    return FeedbackDependencies(data=data, rules=rules, secret=lambda: SECRET, clock=lambda: NOW, log=logs, warn=logs)


def stored_keys(deps: FeedbackDependencies) -> list[str]:
    return deps.data.list_keys("feedback/") + deps.data.list_keys("suppression/")


def post(body: bytes, signature: str | None, **extra: Any) -> HttpRequest:
    headers = {"x-funnelcast-signature": signature} if signature else {}
    return HttpRequest(method="POST", headers=headers, body=body, **extra)


def test_signed_vendor_report_is_stored(deps: FeedbackDependencies) -> None:
    # Given a signed SMS delivery report, When posted, Then 200 and the event is in the log
    body = vendor_body(vendor_report("v1", "s1", "delivered", "2026-11-02T01:00:05Z"))
    response = handle_http(post(body, sign(body)), deps)
    assert (response.status, json.loads(response.body)) == (200, {"accepted": 1})
    assert response.stored is not None
    assert stored_keys(deps) == response.stored.keys
    assert response.stored.keys[0].startswith("feedback/events/dt=2026-11-02/")
    # And no suppression rebuild for a plain delivery (it waits for the scheduled one)
    assert not response.stored.rebuilt


def test_oversized_body_is_400_and_nothing_is_stored(deps: FeedbackDependencies, logs: Logs) -> None:
    body = b"{" + b" " * MAX_BODY_BYTES + b"}"
    response = handle_http(post(body, sign(body)), deps)
    assert response.status == 400
    assert "limit is 262144" in response.body
    assert stored_keys(deps) == []


@pytest.mark.parametrize("body", [b"not json at all " + PHONE.encode(), b"", b"[1, 2"])
def test_non_json_body_is_400_and_nothing_is_stored(deps: FeedbackDependencies, body: bytes) -> None:
    # Given a correctly signed body that is not JSON, When posted, Then 400 naming the problem, nothing stored
    response = handle_http(post(body, sign(body)), deps)
    assert response.status == 400
    assert "not JSON" in response.body
    assert stored_keys(deps) == []


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, sign(b"another body")])
def test_bad_signature_is_401_logged_without_the_body(
    deps: FeedbackDependencies, logs: Logs, signature: str | None
) -> None:
    # Given a report holding a phone number, with a missing or wrong signature
    body = vendor_body({**vendor_report("v1", "s1", "delivered", "2026-11-02T01:00:05Z"), "to": PHONE})
    response = handle_http(post(body, signature, source_ip="203.0.113.9"), deps)
    # Then 401, nothing stored, and the log line says why and from where but never shows the body
    assert response.status == 401
    assert stored_keys(deps) == []
    (message, extra) = logs.lines[-1]
    assert message == "feedback signature refused"
    assert extra["source_ip"] == "203.0.113.9"
    assert extra["bytes"] == len(body)
    assert PHONE not in json.dumps(logs.lines)
    assert "v1" not in json.dumps(logs.lines)


def test_other_methods_are_405(deps: FeedbackDependencies) -> None:
    assert handle_http(HttpRequest(method="GET"), deps).status == 405
    assert stored_keys(deps) == []


def test_unsubscribe_link_asks_then_one_click_post_suppresses(deps: FeedbackDependencies) -> None:
    token = sign_send_id("m1", SECRET)
    # Given the email's unsubscribe link, When a mail scanner or the user GETs it, Then a confirm page only
    page = handle_http(HttpRequest(method="GET", query={"t": token}), deps)
    assert page.status == 200
    assert "method='post'" in page.body
    assert stored_keys(deps) == []
    # When the user (or the mail client, RFC 8058) POSTs, Then the unsubscribe is stored and suppression rebuilt
    done = handle_http(HttpRequest(method="POST", query={"t": token}, body=b"List-Unsubscribe=One-Click"), deps)
    assert done.status == 200
    assert "수신거부" in done.body
    assert done.stored is not None
    assert done.stored.rebuilt
    snapshot = pd.read_parquet(io.BytesIO(deps.data.get_bytes(SUPPRESSION_KEY)))
    assert snapshot[["user_id", "channel"]].to_dict("records") == [{"user_id": "8", "channel": "email"}]


def test_tampered_unsubscribe_token_is_401(deps: FeedbackDependencies) -> None:
    token = sign_send_id("m1", SECRET).replace("m1", "s1")
    response = handle_http(HttpRequest(method="POST", query={"t": token}), deps)
    assert response.status == 401
    assert stored_keys(deps) == []


def test_function_url_event_parsing_decodes_base64_and_lowercases_headers() -> None:
    body = vendor_body(vendor_report("v1", "s1", "delivered", "2026-11-02T01:00:05Z"))
    request = HttpRequest.from_function_url(
        {
            "requestContext": {"http": {"method": "post", "sourceIp": "198.51.100.1"}},
            "headers": {"X-Funnelcast-Signature": "abc"},
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
            "queryStringParameters": {"a": "b"},
        }
    )
    assert (request.method, request.body, request.headers, request.query) == (
        "POST",
        body,
        {"x-funnelcast-signature": "abc"},
        {"a": "b"},
    )


def test_a_retried_batch_overwrites_its_own_object(deps: FeedbackDependencies) -> None:
    # Given the same events stored twice (a retried SQS batch), Then one object, not two
    from funnelcast.feedback.normalize import parse_vendor_body

    events = parse_vendor_body(vendor_body(vendor_report("v1", "s1", "delivered", "2026-11-02T01:00:05Z")))
    first, second = store_events(events, deps), store_events(list(reversed(events)), deps)
    assert first.keys == second.keys
    assert len(deps.data.list_keys("feedback/events/")) == 1
    assert batch_id(events) != batch_id(events[:0])


def test_unsubscribe_by_vendor_report_rebuilds_at_once(deps: FeedbackDependencies) -> None:
    # Given an SMS vendor reporting an opt-out reply (080 수신거부) for s1
    body = vendor_body(vendor_report("v9", "s1", "unsubscribed", "2026-11-02T02:00:00Z"))
    response = handle_http(post(body, sign(body)), deps)
    # Then the SMS consent of user 7 is off in the snapshot the next planner run reads
    assert response.stored is not None
    assert response.stored.rebuilt
    snapshot = pd.read_parquet(io.BytesIO(deps.data.get_bytes(SUPPRESSION_KEY)))
    assert snapshot[["user_id", "channel", "reason"]].to_dict("records") == [
        {"user_id": "7", "channel": "sms", "reason": "unsubscribe:channel"}
    ]
