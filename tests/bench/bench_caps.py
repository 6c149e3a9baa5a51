"""Cap benchmark (``make bench``): requests per reservation, store throughput under moto, pure policy speed.

Prints figures and ratios, asserts only the cost contract (a new reservation is exactly one
DynamoDB write and no read; the usage snapshot is Scan requests only), never a time.

* reserve / retry / refuse / fallback move / release: DynamoDB requests per operation
* reservations per second through the in-process moto (a floor: real DynamoDB is network-bound)
* ``usage_snapshot`` of N users (plain and parallel Scan) and its requests
* ``first_refusing_cap`` + ``with_send`` per second (the planner's arbitration inner loop)
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

USERS = int(os.environ.get("BENCH_CAPS_USERS", "500"))
PURE_CHECKS = int(os.environ.get("BENCH_CAPS_PURE_CHECKS", "100000"))
DAY = date(2026, 12, 2)
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def main() -> None:
    import boto3
    from moto import mock_aws

    from funnelcast.caps.policy import Reservation, UserCapState, first_refusing_cap
    from funnelcast.caps.store import CapStore
    from funnelcast.rules.models import Policy

    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
    }.items():
        os.environ.setdefault(name, value)
    policy = Policy.model_validate(
        {
            "kind": "policy",
            "caps": [
                {"max": 2, "per": "day"},
                {"max": 5, "per": "week"},
                {"max": 1, "per": "day", "channel": "sms"},
                {"max": 3, "per": "week", "topic": "promo"},
            ],
        }
    )
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="ap-northeast-2")
        ddb.create_table(
            TableName="caps",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        calls: Counter[str] = Counter()
        ddb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.update([model.name]))
        store = CapStore("caps", policy, dynamodb_client=ddb)
        base = Reservation(1, "s1", "cart", "kakao_brand", "promo", DAY, NOW, timedelta(days=7))

        def measure(label: str, action: Any) -> Counter[str]:
            calls.clear()
            action()
            print(f"{label:<42} {dict(calls)}")
            return Counter(calls)

        print("DynamoDB requests per cap operation")
        new = measure("reserve (new send)", lambda: store.reserve(base))
        assert new == Counter({"UpdateItem": 1}), new
        retry = measure("reserve (retry, same send id)", lambda: store.reserve(base))
        assert retry == Counter({"UpdateItem": 1}), retry
        measure("reserve (fallback move to sms)", lambda: store.reserve(replace(base, channel="sms")))
        refused = measure(
            "reserve (refused: resend_after)", lambda: store.reserve(replace(base, send_id="s2", channel="email"))
        )
        assert refused == Counter({"UpdateItem": 1}), refused
        measure("release", lambda: store.release(replace(base, channel="sms")))

        calls.clear()
        started = time.perf_counter()
        cpu = time.process_time()
        statuses: Counter[str] = Counter()
        for user in range(USERS):
            for k, channel in enumerate(("sms", "email", "push")):
                result = store.reserve(Reservation(user, f"u{user}k{k}", f"c{k}", channel, "promo", DAY, NOW, None))
                statuses[result.status] += 1
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        reservations = USERS * 3
        print(
            f"\n{reservations} reservations for {USERS} users (2/day cap): {dict(statuses)}\n"
            f"  requests {dict(calls)} = {sum(calls.values()) / reservations:.2f} per reservation\n"
            f"  {reservations / wall:,.0f} reservations/s through in-process moto "
            f"({wall * 1000 / reservations:.2f} ms wall, {cpu * 1000 / reservations:.2f} ms CPU each)"
        )
        assert calls == Counter({"UpdateItem": reservations}), calls

        for segments in (1, 4):
            calls.clear()
            started = time.perf_counter()
            snapshot = store.usage_snapshot(segments=segments)
            wall = time.perf_counter() - started
            print(
                f"usage_snapshot(segments={segments}): {len(snapshot)} users in {wall * 1000:.0f} ms, "
                f"requests {dict(calls)}"
            )
            assert set(calls) == {"Scan"}, calls

    state = snapshot[0]
    checks = 0
    started = time.process_time()
    while checks < PURE_CHECKS:
        state = UserCapState.empty(checks)
        for campaign in ("a", "b", "c", "d"):
            cap = first_refusing_cap(
                policy,
                state,
                channel="sms",
                topic="promo",
                campaign_id=campaign,
                local_day=DAY,
                sent_at=NOW,
                resend_after=timedelta(days=7),
            )
            checks += 1
            if cap is None:
                state = state.with_send(
                    send_id=campaign, channel="sms", topic="promo", campaign_id=campaign, local_day=DAY, sent_at=NOW
                )
    cpu = time.process_time() - started
    print(
        f"\npure policy: {checks:,} first_refusing_cap (+ with_send when it fits) in {cpu:.2f} s CPU "
        f"= {checks / cpu:,.0f} checks/s ({cpu * 1e6 / checks:.1f} µs each)"
    )


if __name__ == "__main__":
    main()
