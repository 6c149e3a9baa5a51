"""``create_resources`` against a ThreadedMotoServer (the demo's ``--server`` mode)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from funnelcast.local.aws_env import LocalAws, create_resources, reset_caches
from funnelcast.settings import get_settings
from funnelcast.storage import S3Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        local = create_resources(ROOT / "template.yaml", endpoint_url=f"http://{host}:{port}")
        # Given funnelcast's own environment pointing at the server (what the demo installs)
        environ: dict[str, str] = {}
        local.install(environ, "SendSmsFunction")
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        reset_caches()
        yield local
    finally:
        reset_caches()
        server.stop()


def test_resources_and_funnelcast_clients_reach_the_server(server_aws: LocalAws) -> None:
    # When funnelcast's lazily created clients are used with that environment
    settings = get_settings()
    assert os.environ["AWS_ENDPOINT_URL"] == server_aws.endpoint_url
    assert settings.channel == "sms"
    store = S3Store(settings.data_bucket)
    store.put_bytes("input/customers/hello.csv", b"user_id\n1\n")
    # Then the object is in the server's bucket, seen by an independent client, and queues answer
    body = server_aws.client("s3").get_object(Bucket=settings.data_bucket, Key="input/customers/hello.csv")["Body"]
    assert body.read() == b"user_id\n1\n"
    assert settings.queue_url("sms").startswith(str(server_aws.endpoint_url))
    attributes = server_aws.client("sqs").get_queue_attributes(
        QueueUrl=settings.queue_url("sms"), AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    assert server_aws.arns["SmsDLQ"] in attributes["RedrivePolicy"]
