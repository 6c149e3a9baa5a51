"""AWS provider adapters: SES v2 (email), End User Messaging SMS (sms), SNS mobile push (push).

Each takes an optional boto3 client (tests pass moto's or a Stubber-wrapped one) and turns AWS
error codes into ``ProviderError``: throttling and 5xx are retryable, an unreachable recipient is a
refusal (the worker falls back to the next channel), anything else is a final failure.
"""

from __future__ import annotations

import json
from typing import Any

from funnelcast.aws.clients import client, error_code
from funnelcast.errors import ProviderError
from funnelcast.rules.models import Purpose
from funnelcast.sending.providers.base import ProviderRequest, require_contact

RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "LimitExceededException",
        "Throttled",
        "InternalError",
        "InternalFailure",
        "InternalServerException",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "KMSThrottling",
        "SendingPausedException",
    }
)


def _provider_error(channel: str, exc: Exception, refused_codes: frozenset[str] = frozenset()) -> ProviderError:
    code = error_code(exc)
    if not code:
        # Connection reset, read timeout...: botocore already retried; let SQS try again later.
        return ProviderError(f"{channel}:{type(exc).__name__}", retryable=True)
    if code in RETRYABLE_CODES:
        return ProviderError(f"{channel}:{code}", retryable=True)
    return ProviderError(f"{channel}:{code}", refused=code in refused_codes)


class SesEmailProvider:
    """SES v2 ``send_email`` with the configuration set (event publishing) and join tags."""

    channel = "email"

    def __init__(self, from_address: str, configuration_set: str = "", *, sesv2_client: Any = None) -> None:
        self.from_address = from_address
        self.configuration_set = configuration_set
        self._client = sesv2_client

    def send(self, request: ProviderRequest) -> str:
        to = require_contact(request.contact.email, self.channel, "email")
        message = request.message
        simple: dict[str, Any] = {
            "Subject": {"Data": message.subject or "", "Charset": "UTF-8"},
            "Body": {"Text": {"Data": message.body, "Charset": "UTF-8"}},
        }
        if message.headers:
            simple["Headers"] = [{"Name": name, "Value": value} for name, value in message.headers.items()]
        params: dict[str, Any] = {
            "FromEmailAddress": self.from_address,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Simple": simple},
            # Tags come back in SES events: the feedback function joins on send_id.
            "EmailTags": [
                {"Name": "send_id", "Value": request.send_id},
                {"Name": "campaign_id", "Value": request.campaign_id},
            ],
        }
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        ses = self._client if self._client is not None else client("sesv2")
        try:
            response = ses.send_email(**params)
        except Exception as exc:
            raise _provider_error(self.channel, exc) from exc
        return str(response.get("MessageId", ""))


# End User Messaging SMS answers these when the destination cannot get the text at all.
SMS_REFUSED_CODES = frozenset({"ValidationException", "ConflictException", "ResourceNotFoundException"})


class EndUserMessagingSmsProvider:
    """``pinpoint-sms-voice-v2`` ``send_text_message`` from the configured origination identity."""

    channel = "sms"

    def __init__(self, origination_identity: str, configuration_set: str = "", *, sms_client: Any = None) -> None:
        self.origination_identity = origination_identity
        self.configuration_set = configuration_set
        self._client = sms_client

    def send(self, request: ProviderRequest) -> str:
        phone = require_contact(request.contact.phone, self.channel, "phone")
        message = request.message
        body = message.body
        if message.sms_kind == "LMS" and message.subject:
            body = f"[{message.subject}]\n{body}"
        params: dict[str, Any] = {
            "DestinationPhoneNumber": phone,
            "OriginationIdentity": self.origination_identity,
            "MessageBody": body,
            "MessageType": "PROMOTIONAL" if request.purpose is Purpose.ADVERTISING else "TRANSACTIONAL",
            "Context": {"send_id": request.send_id, "campaign_id": request.campaign_id},
        }
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        sms = self._client if self._client is not None else client("pinpoint-sms-voice-v2")
        try:
            response = sms.send_text_message(**params)
        except Exception as exc:
            raise _provider_error(self.channel, exc, SMS_REFUSED_CODES) from exc
        return str(response.get("MessageId", ""))


# The endpoint is disabled (app uninstalled, token expired) or gone: push cannot reach the user.
PUSH_REFUSED_CODES = frozenset({"EndpointDisabled", "NotFound", "NotFoundException", "InvalidParameter"})


def push_payload(request: ProviderRequest) -> str:
    """The ``MessageStructure=json`` document with APNs and FCM v1 payloads."""
    message = request.message
    data = {"send_id": request.send_id, "campaign_id": request.campaign_id}
    alert: dict[str, str] = {"body": message.body}
    if message.title:
        alert["title"] = message.title
    apns = json.dumps({"aps": {"alert": alert, "sound": "default"}, **data}, ensure_ascii=False)
    fcm = json.dumps({"fcmV1Message": {"message": {"notification": alert, "data": data}}}, ensure_ascii=False)
    document = {"default": message.body, "APNS": apns, "APNS_SANDBOX": apns, "GCM": fcm}
    return json.dumps(document, ensure_ascii=False)


class SnsPushProvider:
    """SNS ``publish`` to the user's platform endpoint ARN."""

    channel = "push"

    def __init__(self, *, sns_client: Any = None) -> None:
        self._client = sns_client

    def send(self, request: ProviderRequest) -> str:
        endpoint = require_contact(request.contact.push_endpoint, self.channel, "push_endpoint")
        sns = self._client if self._client is not None else client("sns")
        try:
            response = sns.publish(TargetArn=endpoint, Message=push_payload(request), MessageStructure="json")
        except Exception as exc:
            raise _provider_error(self.channel, exc, PUSH_REFUSED_CODES) from exc
        return str(response.get("MessageId", ""))
