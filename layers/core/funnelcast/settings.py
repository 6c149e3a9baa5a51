"""Settings read once from the environment at cold start (see docs/ARCHITECTURE.md for every variable)."""

from __future__ import annotations

import os
from functools import cache

from pydantic import BaseModel, ConfigDict, Field

from funnelcast.errors import ConfigurationError

CHANNELS = ("email", "sms", "push", "kakao_alimtalk", "kakao_brand", "webhook")


class Settings(BaseModel):
    """Every knob a function or the CLI reads. Field names are the lower-cased environment variables."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    aws_region: str = Field(default="ap-northeast-2")
    rules_bucket: str = ""
    data_bucket: str = ""
    data_prefix: str = "input/"
    cap_table: str = ""
    state_table: str = ""
    idempotency_table: str = ""
    queue_url_email: str = ""
    queue_url_sms: str = ""
    queue_url_push: str = ""
    queue_url_kakao_alimtalk: str = ""
    queue_url_kakao_brand: str = ""
    queue_url_webhook: str = ""
    schedule_group: str = "funnelcast"
    planner_function_arn: str = ""
    scheduler_role_arn: str = ""
    channel: str = ""
    ses_from_address: str = ""
    ses_configuration_set: str = ""
    unsubscribe_base_url: str = ""
    link_base_url: str = ""
    sms_origination_identity: str = ""
    sms_configuration_set: str = ""
    kakao_base_url: str = ""
    kakao_sender_key: str = ""
    kakao_api_key_parameter: str = ""
    webhook_url: str = ""
    webhook_allowed_hosts: str = ""
    webhook_secret_parameter: str = ""
    feedback_secret_parameter: str = ""
    feedback_queue_url: str = ""
    provider_concurrency: int = 10

    def queue_url(self, channel: str) -> str:
        """The SQS queue URL of ``channel``; a clear error when it is not configured."""
        if channel not in CHANNELS:
            raise ConfigurationError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
        url: str = getattr(self, f"queue_url_{channel}")
        if not url:
            raise ConfigurationError(f"QUEUE_URL_{channel.upper()} is not set")
        return url

    def require(self, *names: str) -> None:
        """Fail fast, naming every missing variable, when a function needs settings that are empty."""
        missing = [name.upper() for name in names if not getattr(self, name)]
        if missing:
            raise ConfigurationError(f"missing environment variables: {', '.join(missing)}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        known = cls.model_fields
        values = {key.lower(): value for key, value in env.items() if key.lower() in known}
        if "aws_region" not in values and env.get("AWS_DEFAULT_REGION"):
            values["aws_region"] = env["AWS_DEFAULT_REGION"]
        return cls.model_validate(values)


@cache
def get_settings() -> Settings:
    """Settings of this process, read on first use (cold start) and kept."""
    return Settings.from_env()
