"""Planner benchmark (``make bench``): one campaign run of 100,000 recipients against moto.

S3, DynamoDB and Scheduler are moto; SQS ``SendMessageBatch`` is answered by a botocore stub (each
request still counted) so that the CPU figure is the planner's, not moto's queue bookkeeping.

Prints the AWS requests the run made (per service and operation, and SQS requests per 1,000
recipients), the planner's CPU time and the time of each stage. Asserts the cost contract (at most 20
SQS requests per 1,000 recipients, no per-user DynamoDB reads), never a time.
Also plans a two-campaign slot (same users, one-a-day cap) to show what arbitration costs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
RECIPIENTS = int(os.environ.get("BENCH_PLANNER_RECIPIENTS", "100000"))
T = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 in Seoul


def campaign(campaign_id: str, priority: int) -> dict[str, Any]:
    message = {"template": "{{ name }}님, 장바구니의 {{ product_name | default: '상품' }}이(가) 기다려요"}
    return {
        "kind": "campaign",
        "id": campaign_id,
        "name": campaign_id,
        "funnel_stage": "revenue",
        "audience": {"segment": "everyone"},
        "schedule": {"cron": "0 10 * * ? *", "timezone": "Asia/Seoul"},
        "purpose": "advertising",
        "topic": "cart",
        "priority": priority,
        "resend_after": "7d",
        "holdout": "10%",
        "send_window": {"start": "09:00", "end": "20:00"},
        "channels": ["kakao_brand", "sms"],
        "variants": [
            {"id": "a", "weight": 50, "messages": {"kakao_brand": message, "sms": message}},
            {"id": "b", "weight": 50, "messages": {"kakao_brand": message, "sms": message}},
        ],
    }


def features(n: int) -> pd.DataFrame:
    """Customers: 3 time zones (10% abroad wait for their window), 20% without Kakao, 5% no consent."""
    ids = range(1, n + 1)
    return pd.DataFrame(
        {
            "user_id": list(ids),
            "timezone": [
                "America/New_York" if i % 10 == 0 else ("Bad/Zone" if i % 97 == 0 else "Asia/Seoul") for i in ids
            ],
            "phone": [f"+8210{i:08d}" for i in ids],
            "email": [f"user{i}@example.com" for i in ids],
            "kakao_friend": [i % 5 != 0 for i in ids],
            "consent_kakao": [True] * n,
            "consent_sms": [i % 20 != 0 for i in ids],
            "consent_night_ads": [False] * n,
            "name": [f"고객{i}" for i in ids],
            "product_name": [f"상품{i % 300}" for i in ids],
        }
    )


STAGES = ("evaluate_audience", "arbitrate", "build_jobs", "decisions_frame", "read_suppression", "audience_frame")


def timed(module: Any, stages: dict[str, float]) -> None:
    """Wrap the planner's stage functions so each adds its CPU seconds to ``stages`` (no profiler overhead)."""
    for name in STAGES:
        original = getattr(module, name)
        original = getattr(original, "__wrapped__", original)

        def wrapper(*args: Any, __name: str = name, __original: Any = original, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return __original(*args, **kwargs)
            finally:
                stages[__name] = stages.get(__name, 0.0) + time.process_time() - started

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(module, name, wrapper)


class _Http:
    """The HTTP half of a stubbed botocore response."""

    status_code = 200
    headers: dict[str, str] = {}  # noqa: RUF012


def main() -> int:
    from moto import mock_aws

    sys.path.insert(0, str(REPO / "tests"))
    from funnelcast.aws.clients import client
    from funnelcast.local.aws_env import DEFAULT_REGION, FAKE_CREDENTIALS, create_resources, reset_caches
    from funnelcast.planning import planner
    from funnelcast.planning.planner import PlannerDependencies, plan_campaign
    from funnelcast.rules.models import RuleSet
    from funnelcast.segments.snapshot import write_snapshot
    from funnelcast.storage import S3Store

    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_DEFAULT_REGION"] = DEFAULT_REGION
    with mock_aws():
        local = create_resources(REPO / "template.yaml", region=DEFAULT_REGION)
        os.environ.update(local.env)
        reset_caches()
        results: list[dict[str, Any]] = []
        for label, campaigns in (
            ("one campaign", [campaign("cart_a", 80)]),
            ("two campaigns in one slot", [campaign("cart_b", 80), campaign("cart_c", 40)]),
        ):
            ruleset = RuleSet.model_validate(
                {"campaigns": campaigns, "policy": {"kind": "policy", "caps": [{"max": 1, "per": "day"}]}}
            )
            rules, data = S3Store(local.names["RulesBucket"]), S3Store(local.names["DataBucket"])
            rules.put_bytes(f"rulesets/{ruleset.rules_hash}/bundle.json", ruleset.canonical_json())
            rules.put_bytes("active.json", json.dumps({"rules_hash": ruleset.rules_hash}).encode())
            ids = list(range(1, RECIPIENTS + 1))
            segments = [f"@audience:{c['id']}" for c in campaigns]
            membership = pd.DataFrame(
                {"user_id": ids * len(segments), "segment_id": [s for s in segments for _ in ids]}
            )
            membership["segment_id"] = pd.Categorical(membership["segment_id"], categories=segments)
            write_snapshot(
                data,
                membership=membership,
                features=features(RECIPIENTS),
                at=T,
                rules_hash=ruleset.rules_hash,
                manifest={},
            )
            deps = PlannerDependencies.from_settings(local.settings)
            deps.clock = lambda: T
            calls: Counter[str] = Counter()

            def count(model: Any, **kwargs: Any) -> None:
                del kwargs
                calls[f"{model.service_model.service_name}.{model.name}"] += 1  # noqa: B023

            def stub_sqs(model: Any, params: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, Any]]:
                # SQS answered without moto: moto's in-process queue work would count as planner CPU.
                del kwargs
                calls[f"sqs.{model.name}"] += 1  # noqa: B023
                entries = params.get("Entries", [])
                return _Http(), {"Successful": [{"Id": e["Id"], "MessageId": e["Id"]} for e in entries]}

            for service in ("dynamodb", "s3", "scheduler"):
                client(service).meta.events.register("before-call.*.*", count)
            client("sqs").meta.events.register("before-call.sqs.SendMessageBatch", stub_sqs)
            stages: dict[str, float] = {}
            timed(planner, stages)
            cpu, wall = time.process_time(), time.perf_counter()
            summary = plan_campaign(campaigns[-1]["id"], T, deps)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            for service in ("dynamodb", "s3", "scheduler"):
                client(service).meta.events.unregister("before-call.*.*", count)
            client("sqs").meta.events.unregister("before-call.sqs.SendMessageBatch", stub_sqs)
            handed = sum(
                json.loads(data.get_bytes(f"runs/{run}/summary.json"))["outcomes"].get(kind, 0)
                for run in summary.planned_with
                for kind in ("queued", "waiting")
            )
            audience = RECIPIENTS * len(campaigns)
            sqs = sum(v for k, v in calls.items() if k.startswith("sqs."))
            per_user_reads = sum(
                v for k, v in calls.items() if k in {"dynamodb.GetItem", "dynamodb.Query", "dynamodb.BatchGetItem"}
            )
            results.append(
                {
                    "label": label,
                    "cpu": cpu,
                    "wall": wall,
                    "calls": dict(sorted(calls.items())),
                    "sqs_per_1000": 1000 * sqs / max(handed, 1),
                    "handed": handed,
                    "audience": audience,
                    "per_user_reads": per_user_reads,
                }
            )
            print(f"\n-- {label}: {audience:,} audience rows, {handed:,} handed to senders (queued + waiting)")
            print(f"   planner CPU {cpu:.2f} s, wall {wall:.2f} s ({1e6 * cpu / audience:.1f} us CPU per audience row)")
            print(f"   outcomes of {summary.run_id}: {summary.outcomes}")
            print(f"   AWS requests: {json.dumps(dict(sorted(calls.items())))}")
            print(f"   SQS requests per 1,000 recipients: {1000 * sqs / max(handed, 1):.2f} (budget 20)")
            print(f"   DynamoDB per-user reads (GetItem/Query/BatchGetItem): {per_user_reads}")
            print("   CPU seconds by stage:", {k: round(v, 2) for k, v in stages.items()})
        reset_caches()
    failed = [r["label"] for r in results if r["sqs_per_1000"] > 20 or r["per_user_reads"]]
    if failed:
        print(f"\nCOST CONTRACT BROKEN in: {failed}")
        return 1
    print("\ncost contract holds: <= 20 SQS requests per 1,000 recipients, no per-user DynamoDB reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
