"""The build_report Lambda under moto: KPIs and the HTML page from the data bucket's records, written to
``reports/<date>/``, the daily suppression rebuild, and per-campaign EMF metrics."""

from __future__ import annotations

import importlib
import io
import json
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from funnelcast.feedback.ingest import write_events
from funnelcast.feedback.normalize import FeedbackEvent, FeedbackType
from funnelcast.feedback.suppression import SUPPRESSION_KEY
from funnelcast.rules.models import Campaign, Policy, RuleSet
from funnelcast.storage import S3Store

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
NOW = T + timedelta(days=3)
CONTEXT = types.SimpleNamespace(
    function_name="build-report",
    memory_limit_in_mb=2048,
    invoked_function_arn="arn:aws:lambda:ap-northeast-2:123456789012:function:build-report",
    aws_request_id="req-1",
)


def winback() -> Campaign:
    return Campaign.model_validate(
        {
            "kind": "campaign",
            "id": "winback",
            "name": "재구매 유도",
            "funnel_stage": "retention",
            "audience": {"segment": "lapsed_buyers"},
            "schedule": {"cron": "0 10 * * ? *"},
            "purpose": "advertising",
            "topic": "promo",
            "holdout": "20%",
            "channels": ["email"],
            "variants": [
                {"id": v, "weight": 1, "messages": {"email": {"template": "다시 만나요", "subject": "쿠폰"}}}
                for v in ("a", "b")
            ],
        }
    )


@pytest.fixture
def records(aws: Any, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    """Given one run of `winback` at T: users 1-8 emailed (a: odd, b: even), 9-10 holdout; all 8 delivered,
    users 1 and 2 opened, 1 clicked; purchases by 1 (T+1h, 10,000원), 9 (holdout, T+2h), 3 (T+8d, too late),
    and 5 before T (a returning buyer)."""
    for name, value in aws.function_env("BuildReportFunction").items():
        monkeypatch.setenv(name, value)
    policy = Policy.model_validate({"kind": "policy", "suppression": {"ignored": {"after": 1, "topic_for": "30d"}}})
    ruleset = RuleSet(campaigns=[winback()], policy=policy)
    rules, data = S3Store(aws.names["RulesBucket"]), S3Store(aws.names["DataBucket"])
    rules.put_bytes(f"rulesets/{ruleset.rules_hash}/bundle.json", ruleset.canonical_json())
    rules.put_bytes("active.json", json.dumps({"rules_hash": ruleset.rules_hash}).encode())
    run_id = "winback@20261102T0100Z"
    decisions = pd.DataFrame(
        [
            {
                "run_id": run_id,
                "campaign_id": "winback",
                "user_id": u,
                "variant_id": None if u > 8 else "ab"[u % 2 == 0],
                "outcome": "holdout" if u > 8 else "queued",
                "reason": "",
                "decided_at": T,
                "send_id": None if u > 8 else f"s{u}",
                "channel": None if u > 8 else "email",
            }
            for u in range(1, 11)
        ]
    )
    buffer = io.BytesIO()
    decisions.to_parquet(buffer, index=False)
    data.put_bytes(f"runs/{run_id}/decisions.parquet", buffer.getvalue())
    data.put_bytes("runs/winback@20260101T0100Z/decisions.parquet", b"not read: outside the 30 days")
    deliveries = [
        {
            "send_id": f"s{u}",
            "run_id": run_id,
            "campaign_id": "winback",
            "user_id": u,
            "variant_id": "ab"[u % 2 == 0],
            "channel": "email",
            "status": "sent",
            "reason": "",
            "sent_at": (T + timedelta(minutes=1)).isoformat(),
            "local_sent_at": "2026-11-02T10:01:00",
            "purpose": "advertising",
            "topic": "promo",
        }
        for u in range(1, 9)
    ]
    data.put_bytes("deliveries/dt=2026-11-02/email-1.jsonl", "\n".join(json.dumps(d) for d in deliveries).encode())
    reactions = [(u, "delivered") for u in range(1, 9)] + [(1, "opened"), (2, "opened"), (1, "clicked")]
    write_events(
        data,
        [
            FeedbackEvent(
                event_id=f"e{u}{kind}",
                send_id=f"s{u}",
                type=FeedbackType(kind),
                ts=T + timedelta(minutes=2),
                channel="email",
            )
            for u, kind in reactions
        ],
        batch_id="b1",
    )
    customers = pd.DataFrame({"user_id": list(range(1, 11))})
    buffer = io.BytesIO()
    customers.to_parquet(buffer, index=False)
    data.put_bytes("input/customers/part-0.parquet", buffer.getvalue())
    events = pd.DataFrame(
        {
            "user_id": [1, 9, 3, 5, 2],
            "ts": [
                T + timedelta(hours=1),
                T + timedelta(hours=2),
                T + timedelta(days=8),
                T - timedelta(days=2),
                T + timedelta(hours=3),
            ],
            "event_type": ["purchase", "purchase", "purchase", "purchase", "page_view"],
            "amount": [10000.0, 5000.0, 7000.0, 3000.0, None],
        }
    )
    buffer = io.BytesIO()
    events.to_parquet(buffer, index=False)
    data.put_bytes("input/events/dt=2026-11-02/part-0.parquet", buffer.getvalue())
    return data


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    monkeypatch.syspath_prepend(str(ROOT / "functions" / "build_report"))
    module = importlib.import_module("build_report")
    module._deps.clear()
    yield module
    module._deps.clear()


def test_daily_report_writes_kpis_html_and_suppression(
    records: S3Store, handler: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the daily schedule fires three days after the run
    result = handler.lambda_handler({"source": "schedule", "now": NOW.isoformat()}, CONTEXT)
    # Then both files are under reports/<day>/
    assert result["keys"] == ["reports/2026-11-05/kpis.parquet", "reports/2026-11-05/report.html"]
    kpis = pd.read_parquet(io.BytesIO(records.get_bytes("reports/2026-11-05/kpis.parquet")))
    by_variant = kpis.set_index("variant_id")
    # And the counts match the hand count (a: users 1,3,5,7; b: 2,4,6,8; holdout 9,10)
    assert by_variant.loc["a", ["sent", "delivered", "opened", "clicked", "converted"]].tolist() == [4, 4, 1, 1, 1]
    assert by_variant.loc["b", ["sent", "delivered", "opened", "clicked", "converted"]].tolist() == [4, 4, 1, 0, 0]
    assert by_variant.loc["(none)", "holdout"] == 2
    assert by_variant.loc["a", "revenue_per_recipient"] == 2500.0
    assert set(kpis["segment"]) == {"lapsed_buyers"}
    assert set(kpis["funnel_stage"]) == {"retention"}
    # And lift per variant: a converts 1/4 treated vs the holdout's 1/2
    assert by_variant.loc["a", "lift"] == pytest.approx(0.25 - 0.5)
    # And re-purchase (retention): user 5 bought before T and not again within 7 days -> 0 of 1
    assert by_variant.loc["a", "repurchase_rate"] == 0.0
    html = records.get_bytes("reports/2026-11-05/report.html").decode()
    assert "재구매" in html or "winback" in html
    assert "<svg" in html
    # And the daily pass moved suppression.ignored: the 6 unopened deliveries pause topic promo for their users
    suppression = pd.read_parquet(io.BytesIO(records.get_bytes(SUPPRESSION_KEY)))
    assert sorted(suppression["user_id"]) == ["3", "4", "5", "6", "7", "8"]
    assert set(suppression["reason"]) == {"ignored:1"}
    # And per-campaign EMF metrics went out
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    sent = [doc for doc in emf if "CampaignSent" in doc]
    assert [(doc["campaign_id"], doc["CampaignSent"]) for doc in sent] == [("winback", [8.0])]


def test_report_with_no_runs_still_writes_an_empty_report(
    aws: Any, records: S3Store, handler: types.ModuleType
) -> None:
    # When the report looks at a window with no run (a week later than T + 30 days)
    result = handler.lambda_handler({"now": (T + timedelta(days=40)).isoformat(), "days": 7}, CONTEXT)
    # Then it still writes both files, with no KPI rows
    assert result["kpi_rows"] == 0
    assert records.exists("reports/2026-12-12/report.html")
