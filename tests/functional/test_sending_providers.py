"""Every channel through its real adapter: moto (SES, SNS, DynamoDB), Stubber (SMS), local HTTP (Kakao, webhook)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from funnelcast.errors import ProviderError
from funnelcast.jobs import Contact
from funnelcast.rules.models import Purpose
from funnelcast.sending.providers.aws import EndUserMessagingSmsProvider, SesEmailProvider, SnsPushProvider
from funnelcast.sending.providers.base import AmbiguousProviderError, ProviderRequest
from funnelcast.sending.providers.http import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    KakaoHttpProvider,
    WebhookProvider,
    allow_loopback_too,
    hmac_signature,
)
from funnelcast.sending.render import RenderedMessage
from funnelcast.sending.retry import RetryPolicy
from funnelcast.sending.state import BATCH_RETRY, DynamoSendStates, FinalState, SendStateError

REGION = "ap-northeast-2"
NO_SLEEP = RetryPolicy(attempts=3, sleep=lambda _: None)


def request(channel: str, contact: Contact, **message: Any) -> ProviderRequest:
    rendered = RenderedMessage(channel=channel, body=message.pop("body", "(광고) 안녕하세요"), **message)
    return ProviderRequest("abc123", "cart", 7, Purpose.ADVERTISING, contact, rendered)


@pytest.fixture
def aws_mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@pytest.mark.usefixtures("aws_mock")
def test_ses_sends_with_configuration_set_tags_and_unsubscribe_headers() -> None:
    # Given a verified sender and a configuration set in moto
    ses = boto3.client("sesv2", region_name=REGION)
    ses.create_email_identity(EmailIdentity="news@shop.example")
    ses.create_configuration_set(ConfigurationSetName="funnelcast")
    provider = SesEmailProvider("news@shop.example", "funnelcast", sesv2_client=ses)
    headers = {"List-Unsubscribe": "<https://u.example/?t=x>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    # When sending, Then SES returns a message id
    message_id = provider.send(
        request("email", Contact(email="kim@mail.example"), subject="(광고) Sale", headers=headers)
    )
    assert message_id
    # And a user without email is refused (fallback), not failed
    with pytest.raises(ProviderError) as refused:
        provider.send(request("email", Contact()))
    assert refused.value.refused


@pytest.mark.usefixtures("aws_mock")
def test_ses_unverified_sender_is_a_final_failure() -> None:
    ses = boto3.client("sesv2", region_name=REGION)
    provider = SesEmailProvider("nobody@unverified.example", sesv2_client=ses)
    with pytest.raises(ProviderError) as failed:
        provider.send(request("email", Contact(email="kim@mail.example"), subject="s"))
    assert not failed.value.retryable
    assert not failed.value.refused
    assert failed.value.reason.startswith("email:")


@pytest.mark.usefixtures("aws_mock")
def test_sns_push_publishes_apns_and_fcm_and_refuses_disabled_endpoints() -> None:
    sns = boto3.client("sns", region_name=REGION)
    app = sns.create_platform_application(Name="app", Platform="GCM", Attributes={"PlatformCredential": "k"})
    endpoint = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"], Token="tok")
    provider = SnsPushProvider(sns_client=sns)
    contact = Contact(push_endpoint=endpoint["EndpointArn"])
    assert provider.send(request("push", contact, title="(광고) 세일"))
    sns.set_endpoint_attributes(EndpointArn=endpoint["EndpointArn"], Attributes={"Enabled": "false"})
    with pytest.raises(ProviderError) as refused:
        provider.send(request("push", contact))
    assert refused.value.refused


def test_sms_sends_promotional_with_context_and_maps_errors() -> None:
    sms = boto3.client("pinpoint-sms-voice-v2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    provider = EndUserMessagingSmsProvider("+8215880000", "cs", sms_client=sms)
    lms = request("sms", Contact(phone="+821012345678"), body="긴 본문", subject="제목", sms_kind="LMS")
    expected = {
        "DestinationPhoneNumber": "+821012345678",
        "OriginationIdentity": "+8215880000",
        "MessageBody": "[제목]\n긴 본문",
        "MessageType": "PROMOTIONAL",
        "Context": {"send_id": "abc123", "campaign_id": "cart"},
        "ConfigurationSetName": "cs",
    }
    with Stubber(sms) as stub:
        stub.add_response("send_text_message", {"MessageId": "m-1"}, expected)
        stub.add_client_error("send_text_message", "ThrottlingException", http_status_code=429)
        stub.add_client_error("send_text_message", "ValidationException", http_status_code=400)
        assert provider.send(lms) == "m-1"
        with pytest.raises(ProviderError) as throttled:
            provider.send(lms)
        assert throttled.value.retryable
        with pytest.raises(ProviderError) as invalid:
            provider.send(lms)
        assert invalid.value.refused
        stub.assert_no_pending_responses()


class Vendor(BaseHTTPRequestHandler):
    """A scripted HTTP vendor: pops one (status, body, delay) per request and keeps what it got."""

    script: ClassVar[list[tuple[int, bytes, float]]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers.items()), body))
        status, answer, delay = type(self).script.pop(0) if type(self).script else (200, b'{"code":"OK"}', 0.0)
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def vendor() -> Iterator[tuple[str, type[Vendor]]]:
    handler = type("ScriptedVendor", (Vendor,), {"script": [], "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def kakao(base_url: str, channel: str = "kakao_alimtalk", timeout: float = 2.0) -> KakaoHttpProvider:
    return KakaoHttpProvider(channel, base_url, "SENDER", lambda: "api-key", timeout=timeout, retry=NO_SLEEP)


def test_kakao_retries_429_then_sends_signed_with_message_key(vendor: tuple[str, type[Vendor]]) -> None:
    base_url, handler = vendor
    handler.script = [(429, b'{"code":"RATE"}', 0.0), (200, b'{"code":"OK","message_id":"v-9"}', 0.0)]
    alimtalk = request("kakao_alimtalk", Contact(phone="+821012345678"), template_code="TPL_01")
    assert kakao(base_url).send(alimtalk) == "v-9"
    assert len(handler.received) == 2
    headers, body = handler.received[-1]
    payload = json.loads(body)
    assert payload["message_key"] == "abc123"
    assert payload["template_code"] == "TPL_01"
    assert headers[SIGNATURE_HEADER] == hmac_signature(b"api-key", headers[TIMESTAMP_HEADER], body)


def test_kakao_brand_needs_a_friend_and_maps_vendor_refusals(vendor: tuple[str, type[Vendor]]) -> None:
    base_url, handler = vendor
    provider = kakao(base_url, "kakao_brand")
    with pytest.raises(ProviderError, match="not_friend") as not_friend:
        provider.send(request("kakao_brand", Contact(phone="+821012345678")))
    assert not_friend.value.refused
    assert handler.received == []
    handler.script = [(400, b'{"code":"BLOCKED"}', 0.0)]
    with pytest.raises(ProviderError) as blocked:
        provider.send(request("kakao_brand", Contact(phone="+821012345678", kakao_friend=True)))
    assert blocked.value.refused


def test_kakao_malformed_json_is_ambiguous_and_timeouts_are_retryable(vendor: tuple[str, type[Vendor]]) -> None:
    base_url, handler = vendor
    alimtalk = request("kakao_alimtalk", Contact(phone="+821012345678"), template_code="T")
    handler.script = [(200, b"<html>oops", 0.0)]
    with pytest.raises(AmbiguousProviderError, match="malformed_response"):
        kakao(base_url).send(alimtalk)
    handler.script = [(200, b'{"code":"OK"}', 0.5)] * 3
    with pytest.raises(ProviderError, match="timeout") as slow:
        kakao(base_url, timeout=0.1).send(alimtalk)
    assert slow.value.retryable
    handler.script = [(503, b"", 0.0)] * 3
    with pytest.raises(ProviderError, match="http_503") as down:
        kakao(base_url).send(alimtalk)
    assert down.value.retryable


def test_webhook_posts_signed_json_to_an_allowed_host(vendor: tuple[str, type[Vendor]]) -> None:
    base_url, handler = vendor
    hook = WebhookProvider(
        f"{base_url.replace('127.0.0.1', 'localhost')}/hook",
        frozenset({"localhost"}),
        lambda: b"s3cret",
        address_allowed=allow_loopback_too,
        resolver=lambda host, port: ["127.0.0.1"],
        retry=NO_SLEEP,
    )
    assert hook.send(request("webhook", Contact())) == "abc123"
    headers, body = handler.received[-1]
    assert json.loads(body)["send_id"] == "abc123"
    assert headers["Idempotency-Key"] == "abc123"
    assert headers[SIGNATURE_HEADER] == hmac_signature(b"s3cret", headers[TIMESTAMP_HEADER], body)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::1", "192.168.1.1"])
def test_webhook_refuses_internal_addresses_after_dns(address: str) -> None:
    # Given an allowlisted host that resolves to an internal address (default SSRF rule)
    hook = WebhookProvider(
        "https://hooks.example/x", frozenset({"hooks.example"}), lambda: b"k", resolver=lambda h, p: [address]
    )
    with pytest.raises(ProviderError, match="address_not_allowed"):
        hook.send(request("webhook", Contact()))


def test_webhook_refuses_hosts_off_the_allowlist() -> None:
    hook = WebhookProvider("https://evil.example/x", frozenset({"hooks.example"}), lambda: b"k")
    with pytest.raises(ProviderError, match="host_not_allowed"):
        hook.send(request("webhook", Contact()))


@pytest.fixture
def state_ddb(aws_mock: None) -> Any:
    """A DynamoDB client with an empty ``state`` table shaped like the StateTable."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(
        TableName="state",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return ddb


STATES_NOW, LEASE = datetime(2026, 12, 1, tzinfo=UTC), timedelta(minutes=5)


def test_dynamo_send_states_claim_once_and_expire(state_ddb: Any) -> None:
    states = DynamoSendStates("state", dynamodb_client=state_ddb)
    now, lease = STATES_NOW, LEASE
    assert states.claim("s1", "sms", now, lease).status == "claimed"
    assert states.claim("s1", "sms", now, lease).status == "in_flight"
    assert states.claim("s1", "sms", now + lease, lease).status == "expired"
    states.finish_all([FinalState("s1", "handed_off", "email")], now)
    assert states.claim("s1", "sms", now, lease).status == "handed_off"
    assert states.claim("s1", "email", now, lease).status == "claimed"
    states.finish_all([FinalState("s1", "done", "email")], now)
    assert states.claim("s1", "email", now + timedelta(days=1), lease).status == "done"


def test_a_jobs_final_states_are_written_25_per_batch_request(state_ddb: Any) -> None:
    # Given 60 claimed sends of one job (one of them listed twice: its last state counts)
    ddb = state_ddb
    states = DynamoSendStates("state", dynamodb_client=ddb)
    now, lease = STATES_NOW, LEASE
    for number in range(60):
        states.claim(f"s{number}", "sms", now, lease)
    finals = [FinalState(f"s{n}", "done", "sms") for n in range(60)] + [FinalState("s7", "handed_off", "email")]
    calls: list[str] = []
    ddb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    # When the worker records them
    states.finish_all(finals, now)
    # Then three BatchWriteItem requests wrote them, and a redelivery finds each settled
    assert calls == ["BatchWriteItem"] * 3
    assert states.claim("s0", "sms", now, lease).status == "done"
    assert states.claim("s59", "sms", now + timedelta(days=1), lease).status == "done"
    assert states.claim("s7", "sms", now, lease).status == "handed_off"
    assert states.claim("s7", "email", now, lease).status == "claimed"


def test_final_states_left_unprocessed_raise_naming_them() -> None:
    # Given a table that keeps throttling one item
    ddb = boto3.client("dynamodb", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(ddb)
    unprocessed = {"state": [{"PutRequest": {"Item": {"pk": {"S": "send#s1"}, "sk": {"S": "state"}}}}]}
    for _ in range(BATCH_RETRY.attempts):
        stubber.add_response("batch_write_item", {"UnprocessedItems": unprocessed})
    states = DynamoSendStates("state", dynamodb_client=ddb, retry=replace(BATCH_RETRY, sleep=lambda _: None))
    # When the outcome is recorded, Then the error names the send instead of dropping it silently
    with stubber, pytest.raises(SendStateError, match=r"1 send states stayed unprocessed in state: send#s1"):
        states.finish_all([FinalState("s1", "done", "sms")], datetime(2026, 12, 1, tzinfo=UTC))
