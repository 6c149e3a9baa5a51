"""Shared fixtures: ``aws`` stands template.yaml's resources up in moto and points funnelcast at them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from funnelcast.local.aws_env import DEFAULT_REGION, FAKE_CREDENTIALS, LocalAws, create_resources, reset_caches
from funnelcast.storage import LocalStore

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "template.yaml"


class CountingStore(LocalStore):
    """A LocalStore that remembers every key read (``reads``): for tests of what a reader fetches."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def get_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().get_bytes(key)


@pytest.fixture
def counting_store(tmp_path: Path) -> CountingStore:
    """An empty local data root under ``tmp_path`` that counts its reads."""
    return CountingStore(tmp_path / "data")


@pytest.fixture
def repo_root() -> Path:
    """The repository root (where template.yaml, functions/ and segment_rules/ are)."""
    return REPO_ROOT


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    """Every bucket, table, queue (with DLQ), topic and schedule group of template.yaml, in moto.

    Given in-process moto with fake credentials in ap-northeast-2,
    when a test runs, the environment holds what every function gets from the template (RULES_BUCKET,
    DATA_BUCKET, CAP_TABLE, STATE_TABLE, QUEUE_URL_* ...; no CHANNEL: use
    ``monkeypatch.setenv("CHANNEL", ...)`` or ``aws.function_env("SendSmsFunction")``), and the
    boto3-client and settings caches are cleared before and after.
    """
    from moto import mock_aws

    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", DEFAULT_REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        local = create_resources(TEMPLATE, region=DEFAULT_REGION)
        for name, value in local.env.items():
            monkeypatch.setenv(name, value)
        reset_caches()
        try:
            yield local
        finally:
            reset_caches()
