"""Lazily created, cached boto3 clients (never at import time, so cold starts stay cheap)."""

from __future__ import annotations

from functools import cache
from typing import Any

from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A shared boto3 client for ``service``. Tests reset it with ``client.cache_clear()``."""
    import boto3  # noqa: PLC0415  (imported on first use: keeps handler cold start small)

    # Typed as Any: boto3-stubs (pulled in by aws-sam-cli) only type literal service names.
    session: Any = boto3.session.Session()
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=_CONFIG)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
