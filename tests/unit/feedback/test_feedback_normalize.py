"""Provider payloads -> FeedbackEvent: every accepted shape and every refusal names what is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from feedback_payloads import (
    SECRET,
    opt_out,
    push_status,
    ses_record,
    sign,
    sns_envelope,
    vendor_body,
    vendor_report,
)
from hypothesis import given
from hypothesis import strategies as st

from funnelcast.feedback.normalize import (
    MAX_BODY_BYTES,
    FeedbackInputError,
    FeedbackType,
    SignatureError,
    fill_implied,
    parse_push_status,
    parse_ses_record,
    parse_sqs_body,
    parse_unsubscribe_token,
    parse_vendor_body,
    verify_signature,
)
from funnelcast.sending.compliance import sign_send_id

T = "2026-11-02T01:00:00.000Z"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("Delivery", "delivered"),
        ("Open", "opened"),
        ("Click", "clicked"),
        ("Bounce", "bounced"),
        ("Complaint", "complaint"),
        ("Reject", "failed"),
    ],
)
def test_ses_types_map_to_feedback_types(kind: str, expected: str) -> None:
    # Given an SES record of each tracked type, When parsed, Then its type, send id, channel and UTC time
    event = parse_ses_record(ses_record(kind, "s1", T))
    assert event is not None
    assert (event.type.value, event.send_id, event.channel) == (expected, "s1", "email")
    assert event.ts == datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def test_ses_send_and_preference_changes_are_not_feedback() -> None:
    # Given a Send record and a Subscription that opts into a topic, When parsed, Then nothing is made
    assert parse_ses_record(ses_record("Send", "s1", T)) is None
    opt_in = ses_record(
        "Subscription",
        "s1",
        T,
        newTopicPreferences={
            "unsubscribeAll": False,
            "topicSubscriptionStatus": [{"topicName": "promo", "subscriptionStatus": "OptIn"}],
        },
    )
    assert parse_ses_record(opt_in) is None


def test_ses_opt_out_is_an_unsubscribe() -> None:
    event = parse_ses_record(opt_out("s1", T))
    assert event is not None
    assert event.type is FeedbackType.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"mail": {}}, "eventType is missing"),
        ({"eventType": "Teleport", "mail": {}}, "unknown eventType 'Teleport'"),
        ({"eventType": "Open"}, "mail object is missing"),
        ({"eventType": "Open", "mail": {"tags": {}}}, "mail.tags.send_id is missing"),
        (
            {"eventType": "Open", "mail": {"tags": {"send_id": ["s"]}}, "open": {"timestamp": "yesterday"}},
            "timestamp 'yesterday' is not ISO 8601",
        ),
    ],
)
def test_bad_ses_records_name_the_field(record: dict[str, object], message: str) -> None:
    # Given a malformed SES record, When parsed, Then the error says which field is wrong
    with pytest.raises(FeedbackInputError, match=message):
        parse_ses_record(record)


def test_the_same_ses_record_twice_has_one_event_id() -> None:
    # Given SES delivering the same record twice (SNS/SQS are at-least-once)
    first, second = parse_ses_record(ses_record("Open", "s1", T)), parse_ses_record(ses_record("Open", "s1", T))
    # Then both carry the same id (counted once downstream), and another open of the same mail does not
    later = parse_ses_record(ses_record("Open", "s1", "2026-11-02T02:00:00Z"))
    assert first is not None and second is not None and later is not None  # noqa: PT018
    assert first.event_id == second.event_id
    assert later.event_id != first.event_id


def test_sqs_body_unwraps_the_sns_envelope_for_ses_and_push() -> None:
    # Given SNS envelopes around an SES record and a push delivery status, When parsed, Then one event each
    (email,) = parse_sqs_body(sns_envelope(ses_record("Delivery", "s1", T)))
    (push,) = parse_sqs_body(sns_envelope(push_status("s2", "FAILURE", T)))
    assert (email.type, email.channel) == (FeedbackType.DELIVERED, "email")
    assert (push.type, push.channel, push.send_id) == (FeedbackType.FAILED, "push", "s2")
    assert parse_sqs_body(sns_envelope(ses_record("Send", "s1", T))) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "sqs body is not JSON"),
        (json.dumps({"Message": "{oops"}), "SNS Message is not JSON"),
        (json.dumps({"Message": "[1]"}), "SNS Message is not an object"),
    ],
)
def test_bad_sqs_bodies_are_refused(body: str, message: str) -> None:
    with pytest.raises(FeedbackInputError, match=message):
        parse_sqs_body(body)


def test_push_status_needs_a_known_status() -> None:
    with pytest.raises(FeedbackInputError, match="status 'MAYBE'"):
        parse_push_status(push_status("s1", "MAYBE", T))


def test_vendor_reports_parse_with_optional_user_id() -> None:
    # Given a Kakao and an SMS report, one naming the user, When parsed, Then two events in order
    body = vendor_body(
        vendor_report("k1", "s1", "delivered", T, "kakao_alimtalk"),
        {**vendor_report("m1", "s2", "failed", T), "user_id": 42},
    )
    kakao, sms = parse_vendor_body(body)
    assert (kakao.channel, kakao.type, kakao.user_id) == ("kakao_alimtalk", FeedbackType.DELIVERED, None)
    assert (sms.channel, sms.type, sms.user_id) == ("sms", FeedbackType.FAILED, "42")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "body is not JSON"),
        (b"<xml/>", "body is not JSON"),
        (b"[]", "body holds no reports"),
        (
            vendor_body({"id": "1", "status": "delivered", "ts": T, "channel": "sms"}),
            r"reports\[0\]\.send_id is missing",
        ),
        (
            vendor_body(vendor_report("1", "s", "delivered", T), vendor_report("2", "s", "read", T)),
            r"reports\[1\]\.status 'read' is not one of",
        ),
        (vendor_body(vendor_report("1", "s", "delivered", T, "fax")), r"reports\[0\]\.channel 'fax'"),
    ],
)
def test_bad_vendor_bodies_name_the_report_and_field(body: bytes, message: str) -> None:
    # Given a bad vendor body, When parsed, Then the error names the report index and field
    with pytest.raises(FeedbackInputError, match=message):
        parse_vendor_body(body)


def test_oversized_vendor_body_is_refused_before_parsing() -> None:
    # Given a body one byte over 256 KB (valid JSON), When parsed, Then refused naming the limit
    base = vendor_body(vendor_report("1", "s", "delivered", T))
    at_limit = base + b" " * (MAX_BODY_BYTES - len(base))  # JSON allows trailing whitespace
    body = at_limit + b" "
    with pytest.raises(FeedbackInputError, match=f"{MAX_BODY_BYTES + 1} bytes; the limit is {MAX_BODY_BYTES}"):
        parse_vendor_body(body)
    assert parse_vendor_body(at_limit)  # the same report at exactly the limit is fine


def test_signature_accepts_only_the_right_hmac() -> None:
    body = vendor_body(vendor_report("1", "s", "delivered", T))
    verify_signature(body, sign(body), SECRET)
    verify_signature(body, sign(body).removeprefix("sha256=").upper(), SECRET)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(body + b" ", sign(body), SECRET)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(body, sign(body, b"other secret"), SECRET)
    with pytest.raises(SignatureError, match="missing"):
        verify_signature(body, None, SECRET)


@given(st.binary(max_size=200), st.binary(min_size=1, max_size=64))
def test_signature_round_trips_for_any_body(body: bytes, secret: bytes) -> None:
    # Property: what the vendor signs verifies; flipping the secret never does
    verify_signature(body, sign(body, secret), secret)
    with pytest.raises(SignatureError):
        verify_signature(body, sign(body, secret + b"!"), secret)


def test_unsubscribe_token_from_the_sender_round_trips() -> None:
    # Given the token the email sender signs, When parsed, Then an unsubscribe of that send at `now`
    now = datetime(2026, 11, 3, tzinfo=UTC)
    event = parse_unsubscribe_token(sign_send_id("s9", SECRET), SECRET, now=now)
    assert (event.send_id, event.type, event.channel, event.ts) == ("s9", FeedbackType.UNSUBSCRIBED, "email", now)
    # And a second click is the same event; a tampered token is refused
    assert (
        parse_unsubscribe_token(sign_send_id("s9", SECRET), SECRET, now=now.replace(day=4)).event_id == event.event_id
    )
    with pytest.raises(SignatureError):
        parse_unsubscribe_token(sign_send_id("s9", SECRET).replace("s9", "s8"), SECRET, now=now)


def test_open_before_delivery_implies_one_delivery() -> None:
    # Given an open and a click arriving for a send whose delivery has not arrived
    events = [
        parse_ses_record(ses_record("Click", "s1", "2026-11-02T01:05:00Z")),
        parse_ses_record(ses_record("Open", "s1", "2026-11-02T01:04:00Z")),
        parse_ses_record(ses_record("Delivery", "s2", T)),
        parse_ses_record(ses_record("Open", "s2", "2026-11-02T01:03:00Z")),
    ]
    filled = fill_implied([e for e in events if e is not None])
    # Then s1 gets exactly one implied delivery at the first reaction's time, s2 none (it was delivered)
    delivered = [e for e in filled if e.type is FeedbackType.DELIVERED]
    assert sorted(e.send_id for e in delivered) == ["s1", "s2"]
    implied = next(e for e in delivered if e.send_id == "s1")
    assert implied.ts == datetime(2026, 11, 2, 1, 4, tzinfo=UTC)
