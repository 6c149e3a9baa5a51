"""AWS-backed sender dependencies built from settings (imported on first invocation, not at import)."""

from __future__ import annotations

import json
import threading
from functools import cache
from typing import Any

from funnelcast.aws.clients import client, error_code
from funnelcast.errors import ConfigurationError, ObjectNotFoundError, QueueError
from funnelcast.rules.models import RuleSet
from funnelcast.sending.providers.base import Provider
from funnelcast.sending.state import DynamoSendStates
from funnelcast.sending.worker import SenderDependencies
from funnelcast.settings import Settings
from funnelcast.storage import ObjectStore, S3Store

SECRET_MAX_AGE_SECONDS = 300


class StoredRuleSets:
    """Rule sets from the rules bucket: ``active.json`` per invocation, bundles cached by hash."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._bundles: dict[str, RuleSet] = {}
        self._lock = threading.Lock()

    def bundle(self, rules_hash: str) -> RuleSet:
        with self._lock:
            if rules_hash not in self._bundles:
                try:  # H2's loader when it exists, else the documented layout
                    from funnelcast.activation import load_ruleset_bundle  # noqa: PLC0415

                    self._bundles[rules_hash] = load_ruleset_bundle(self.store, rules_hash)
                except ImportError:
                    body = self.store.get_bytes(f"rulesets/{rules_hash}/bundle.json")
                    self._bundles[rules_hash] = RuleSet.from_bundle(body)
            return self._bundles[rules_hash]

    def active(self) -> RuleSet | None:
        try:
            pointer = json.loads(self.store.get_bytes("active.json"))
        except ObjectNotFoundError:
            return None
        return self.bundle(str(pointer["rules_hash"]))


class SqsJobQueues:
    """Per-channel queue URLs from settings; one ``SendMessage`` per follow-up job."""

    def __init__(self, settings: Settings, *, sqs_client: Any = None) -> None:
        self.settings = settings
        self._client = sqs_client

    def send(self, channel: str, body: str, *, delay_seconds: int = 0) -> None:
        sqs = self._client if self._client is not None else client("sqs")
        try:
            sqs.send_message(QueueUrl=self.settings.queue_url(channel), MessageBody=body, DelaySeconds=delay_seconds)
        except ConfigurationError:
            raise
        except Exception as exc:
            raise QueueError(f"cannot enqueue a {channel} job: {error_code(exc) or exc}") from exc


def _parameter(name: str) -> str:
    """An SSM parameter or Secrets Manager secret (``arn:aws:secretsmanager:...``), cached 5 minutes."""
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

    if name.startswith("arn:aws:secretsmanager:"):
        return str(parameters.get_secret(name, max_age=SECRET_MAX_AGE_SECONDS))
    return str(parameters.get_parameter(name, decrypt=True, max_age=SECRET_MAX_AGE_SECONDS))


def _secret_bytes(name: str) -> bytes:
    if not name:
        raise ConfigurationError("a signing secret parameter is not configured")
    return _parameter(name).encode()


def build_provider(channel: str, settings: Settings) -> Provider:
    """The real adapter of ``channel`` configured from settings."""
    from funnelcast.sending.providers import aws, http  # noqa: PLC0415

    if channel == "email":
        settings.require("ses_from_address")
        return aws.SesEmailProvider(settings.ses_from_address, settings.ses_configuration_set)
    if channel == "sms":
        settings.require("sms_origination_identity")
        return aws.EndUserMessagingSmsProvider(settings.sms_origination_identity, settings.sms_configuration_set)
    if channel == "push":
        return aws.SnsPushProvider()
    if channel in {"kakao_alimtalk", "kakao_brand"}:
        settings.require("kakao_base_url", "kakao_sender_key", "kakao_api_key_parameter")
        key_name = settings.kakao_api_key_parameter
        return http.KakaoHttpProvider(
            channel, settings.kakao_base_url, settings.kakao_sender_key, lambda: _parameter(key_name)
        )
    if channel == "webhook":
        settings.require("webhook_url", "webhook_allowed_hosts", "webhook_secret_parameter")
        hosts = frozenset(h.strip().lower() for h in settings.webhook_allowed_hosts.split(",") if h.strip())
        secret_name = settings.webhook_secret_parameter
        return http.WebhookProvider(settings.webhook_url, hosts, lambda: _secret_bytes(secret_name))
    raise ConfigurationError(f"unknown channel {channel!r}")


def dependencies_from_settings(settings: Settings) -> SenderDependencies:
    """Stores, cap store, state table, queues and the provider of ``settings.channel``."""
    settings.require("channel", "rules_bucket", "data_bucket", "cap_table", "state_table")
    from funnelcast.caps.store import CapStore  # noqa: PLC0415  (H5)

    rules = StoredRuleSets(S3Store(settings.rules_bucket))
    active = rules.active()
    if active is None:
        raise ConfigurationError(f"no active rule set in s3://{settings.rules_bucket}/active.json")
    feedback_secret = settings.feedback_secret_parameter
    return SenderDependencies(
        rulesets=rules,
        caps=CapStore(settings.cap_table, active.policy),
        states=DynamoSendStates(settings.state_table),
        queues=SqsJobQueues(settings),
        deliveries=S3Store(settings.data_bucket),
        providers={settings.channel: build_provider(settings.channel, settings)},
        concurrency=settings.provider_concurrency,
        unsubscribe_base_url=settings.unsubscribe_base_url,
        unsubscribe_secret=cache(lambda: _secret_bytes(feedback_secret)),
    )
