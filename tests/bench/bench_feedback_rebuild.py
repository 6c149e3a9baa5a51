"""Feedback benchmark (``make bench``): a full suppression rebuild over a large event log on a local folder.

The rebuild runs after every batch carrying an unsubscribe or complaint, and daily, so its cost over
the whole log matters. Prints figures; asserts nothing about time (benchmarks are not tests).
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from funnelcast.feedback.ingest import read_deliveries, read_events, write_events
from funnelcast.feedback.normalize import FeedbackEvent, FeedbackType
from funnelcast.feedback.suppression import rebuild_suppression
from funnelcast.rules.models import Suppression
from funnelcast.storage import LocalStore

T0 = datetime(2026, 11, 2, tzinfo=UTC)
POLICY = Suppression.model_validate(
    {
        "ignored": {"after": 3, "topic_for": "30d"},
        "negative": {"events": ["complaint", "unsubscribe"], "topic_for": "90d"},
    }
)


def build(store: LocalStore, sends: int, files: int = 100, seed: int = 1) -> int:
    """``sends`` delivery records in ``files`` objects; delivered for each, 30% opened, 1% unsubscribed."""
    rng = random.Random(seed)
    per_file = sends // files
    events: list[FeedbackEvent] = []
    for f in range(files):
        rows = []
        for i in range(per_file):
            send_id, at = f"s{f}-{i}", T0 + timedelta(minutes=f)
            rows.append(
                {
                    "send_id": send_id,
                    "run_id": "r",
                    "campaign_id": "c",
                    "user_id": rng.randrange(sends // 2),
                    "variant_id": "a",
                    "channel": rng.choice(["email", "sms", "kakao_brand"]),
                    "status": "sent",
                    "reason": "",
                    "sent_at": at.isoformat(),
                    "local_sent_at": at.isoformat(),
                    "purpose": "advertising",
                    "topic": "promo",
                }
            )
            events.append(
                FeedbackEvent(
                    event_id=f"d{send_id}", send_id=send_id, type=FeedbackType.DELIVERED, ts=at, channel="email"
                )
            )
            if rng.random() < 0.3:
                events.append(
                    FeedbackEvent(
                        event_id=f"o{send_id}",
                        send_id=send_id,
                        type=FeedbackType.OPENED,
                        ts=at + timedelta(minutes=5),
                        channel="email",
                    )
                )
            if rng.random() < 0.01:
                events.append(
                    FeedbackEvent(
                        event_id=f"u{send_id}",
                        send_id=send_id,
                        type=FeedbackType.UNSUBSCRIBED,
                        ts=at + timedelta(minutes=9),
                        channel="email",
                    )
                )
        store.put_bytes(f"deliveries/dt=2026-11-02/email-{f}.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    for start in range(0, len(events), 200):
        write_events(store, events[start : start + 200], batch_id=f"b{start}")
    return len(events)


def main() -> None:
    print("suppression rebuild over the whole log (local folder, bulk Arrow JSON parse)")
    for sends in (10_000, 50_000, 200_000):
        with TemporaryDirectory() as folder:
            store = LocalStore(Path(folder))
            events = build(store, sends)
            started = time.perf_counter()
            deliveries = read_deliveries(store)
            read_deliveries_s = time.perf_counter() - started
            started = time.perf_counter()
            log = read_events(store)
            read_events_s = time.perf_counter() - started
            started = time.perf_counter()
            frame, unknown = rebuild_suppression(store, POLICY, now=T0 + timedelta(days=1))
            rebuild_s = time.perf_counter() - started
            print(
                f"  {sends:>8,} sends, {events:>8,} events: read deliveries {read_deliveries_s:5.2f} s, "
                f"read events {read_events_s:5.2f} s, full rebuild {rebuild_s:5.2f} s "
                f"({rebuild_s / (sends + events) * 1e6:.1f} us per record), {len(frame):,} rows, "
                f"{unknown} unknown; {len(deliveries):,}/{len(log):,} read"
            )


if __name__ == "__main__":
    main()
