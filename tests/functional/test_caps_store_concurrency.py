"""8 threads reserving for the same 100 users through a moto server: never over a cap, counts exact.

DynamoDB applies each conditional write atomically per item; moto's server does not (two writes
creating the same item at once lose one of them - this test caught that). The ``endpoint`` fixture
therefore serialises moto's ``update_item`` - exactly the guarantee DynamoDB gives - while the 8
client threads still race over HTTP with their own clients.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from moto.dynamodb.models import DynamoDBBackend
from moto.server import ThreadedMotoServer

from funnelcast.caps.policy import Reservation, exceeded_caps
from funnelcast.caps.store import CapStore
from funnelcast.rules.models import Policy

REGION = "ap-northeast-2"
TABLE = "caps-concurrency"
USERS = 100
THREADS = 8
DAY = date(2026, 12, 2)
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
CHANNELS = ("sms", "email", "push")
POLICY = Policy.model_validate(
    {
        "kind": "policy",
        "caps": [{"max": 2, "per": "day"}, {"max": 5, "per": "week"}, {"max": 1, "per": "day", "channel": "sms"}],
    }
)


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server on 127.0.0.1 and a random free port, with the cap table of ARCHITECTURE.md."""
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(logging.getLogger("werkzeug"), "disabled", True)  # one line per request otherwise
    atomic = threading.Lock()
    racy_update_item = DynamoDBBackend.update_item

    def update_item(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with atomic:
            return racy_update_item(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "update_item", update_item)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=url)
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield url
    finally:
        server.stop()


@dataclass
class Worker:
    """One sender thread: its own client, store and request counts."""

    number: int
    url: str
    results: Counter[str] = field(default_factory=Counter)
    held: Counter[int] = field(default_factory=Counter)  # user -> places this worker holds
    requests: Counter[str] = field(default_factory=Counter)
    reserves: int = 0
    releases: int = 0

    def run(self) -> None:
        client = boto3.client("dynamodb", region_name=REGION, endpoint_url=self.url)
        client.meta.events.register("before-call.dynamodb.*", lambda model, **_: self.requests.update([model.name]))
        store = CapStore(TABLE, POLICY, dynamodb_client=client)
        for user in range(USERS):
            # Each thread sends once to every user; some sends are retried (an SQS redelivery) and
            # some, once reserved, finally fail and are released.
            mine = Reservation(
                user, f"t{self.number}u{user}", f"c{self.number}", CHANNELS[self.number % 3], None, DAY, NOW, None
            )
            result = store.reserve(mine)
            self.reserves += 1
            self.results[result.status] += 1
            if result.status == "reserved":
                self.held[user] += 1
            if user % 4 == self.number % 4:
                retry = store.reserve(mine)
                self.reserves += 1
                if result.status == "reserved":
                    assert retry.status == "already_reserved"
                elif retry.status == "reserved":  # another thread gave a place back meanwhile
                    self.held[user] += 1
                    result = retry
            if result.status == "reserved" and user % 5 == self.number % 5:
                store.release(mine)
                self.releases += 1
                self.held[user] -= 1


def test_eight_threads_never_push_a_user_over_a_cap(endpoint: str) -> None:
    # Given 8 sender threads reserving for the same 100 users at the same time
    workers = [Worker(n, endpoint) for n in range(THREADS)]
    start = threading.Barrier(THREADS)

    def go(worker: Worker) -> None:
        start.wait()
        worker.run()

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(go, workers))
    # When the table is read back
    store = CapStore(TABLE, POLICY, dynamodb_client=boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint))
    snapshot = store.usage_snapshot(segments=2)
    held = sum((w.held for w in workers), Counter[int]())
    full = 0
    for user in range(USERS):
        usage = snapshot[user].week("2026-W49")
        # Then no cap was ever exceeded
        assert exceeded_caps(POLICY, usage) == [], user
        # and the counts are exact: what the threads were told they hold is what the table holds
        assert usage.count("n_w") == usage.count("n_d3") == len(usage.sends) == held[user], user
        assert sum(usage.count(f"n_w_ch_{c}") for c in CHANNELS) == usage.count("n_w")
        full += usage.count("n_d3") == 2
    # and the caps did bite (8 sends per user against 2 per day): most users end full
    assert sum(w.results["refused"] for w in workers) > USERS * 4
    assert full > USERS // 2
    # and every reservation was exactly one write, with no reads; a release is one query + one write
    requests = sum((w.requests for w in workers), Counter[str]())
    reserves = sum(w.reserves for w in workers)
    releases = sum(w.releases for w in workers)
    assert requests == Counter({"UpdateItem": reserves + releases, "Query": releases})
