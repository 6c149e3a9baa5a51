"""The event log (JSONL) read back de-duplicated, unknown send ids set aside, and the suppression rules
with their time boundaries — ending in the planner's own reader of the snapshot."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnelcast.errors import DataContractError
from funnelcast.feedback.ingest import UNKNOWN_KEY, read_events, set_aside_unknown, write_events
from funnelcast.feedback.ingest import events_frame as make_events_frame
from funnelcast.feedback.normalize import FeedbackEvent, FeedbackType
from funnelcast.feedback.suppression import (
    OPEN_TRACKED_CHANNELS,
    SUPPRESSION_KEY,
    apply_reactions,
    build_suppression,
    rebuild_suppression,
)
from funnelcast.planning.eligibility import Suppressions
from funnelcast.rules.models import Campaign, Suppression
from funnelcast.storage import LocalStore

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
POLICY = Suppression.model_validate(
    {
        "unsubscribe": "channel",
        "ignored": {"after": 3, "topic_for": "30d"},
        "negative": {"events": ["complaint", "unsubscribe"], "topic_for": "90d"},
    }
)


def event(send_id: str, kind: str, ts: datetime, channel: str = "email", event_id: str | None = None) -> FeedbackEvent:
    return FeedbackEvent(
        event_id=event_id or f"{send_id}-{kind}-{ts:%H%M%S}",
        send_id=send_id,
        type=FeedbackType(kind),
        ts=ts,
        channel=channel,
    )


def delivery(
    send_id: str, user_id: int, *, channel: str = "email", topic: str | None = "promo", sent_at: datetime = T0
) -> dict[str, Any]:
    return {
        "send_id": send_id,
        "run_id": "r",
        "campaign_id": "c1",
        "user_id": user_id,
        "variant_id": "a",
        "channel": channel,
        "status": "sent",
        "reason": "",
        "sent_at": sent_at.isoformat(),
        "local_sent_at": sent_at.isoformat(),
        "purpose": "advertising",
        "topic": topic,
    }


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "data")


def put_deliveries(store: LocalStore, rows: list[dict[str, Any]]) -> None:
    store.put_bytes("deliveries/dt=2026-11-02/email-1.jsonl", "\n".join(json.dumps(r) for r in rows).encode())


def deliveries_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True)
    return frame


def events_frame(events: list[FeedbackEvent]) -> pd.DataFrame:
    return make_events_frame(events)


# --- the log ----------------------------------------------------------------------------------------


def test_events_land_per_day_and_duplicates_count_once(store: LocalStore) -> None:
    # Given the same delivery written by two batches (a redelivered SQS message) and an open the next day
    delivered = event("s1", "delivered", T0, event_id="e1")
    opened = event("s1", "opened", T0 + timedelta(days=1), event_id="e2")
    keys = write_events(store, [delivered, opened], batch_id="b1") + write_events(store, [delivered], batch_id="b2")
    # Then objects are per day, and the log reads back one row per event id
    assert keys == [
        "feedback/events/dt=2026-11-02/b1.jsonl",
        "feedback/events/dt=2026-11-03/b1.jsonl",
        "feedback/events/dt=2026-11-02/b2.jsonl",
    ]
    frame = read_events(store)
    assert sorted(frame["event_id"]) == ["e1", "e2"]
    assert str(frame["ts"].dt.tz) == "UTC"


def test_open_stored_before_its_delivery_counts_one_delivery(store: LocalStore) -> None:
    # Given an open stored first, then (a later batch) its delivery
    write_events(store, [event("s1", "opened", T0 + timedelta(minutes=5))], batch_id="b1")
    assert read_events(store)["type"].tolist().count("delivered") == 1  # implied before the delivery came
    write_events(store, [event("s1", "delivered", T0)], batch_id="b2")
    # Then exactly one delivery for s1, the real one
    frame = read_events(store)
    delivered = frame[frame["type"] == "delivered"]
    assert delivered["ts"].tolist() == [pd.Timestamp(T0)]


def test_a_corrupt_log_line_names_its_object_and_line(store: LocalStore) -> None:
    store.put_bytes("feedback/events/dt=2026-11-02/bad.jsonl", b'{"event_id": "x"}\n{nope\n')
    with pytest.raises(DataContractError, match=r"dt=2026-11-02/bad.jsonl:2: not JSON"):
        read_events(store)


def test_unknown_send_ids_are_kept_aside_and_counted(store: LocalStore) -> None:
    # Given two events for a send no delivery knows and one for a known send
    deliveries = deliveries_frame([delivery("s1", 1)])
    events = events_frame([event("s1", "delivered", T0), event("ghost", "opened", T0), event("ghost", "clicked", T0)])
    known, unknown = set_aside_unknown(store, events, deliveries)
    # Then the known one goes on, the two others are counted and written aside
    assert known["send_id"].tolist() == ["s1"]
    assert unknown == 2
    aside = [json.loads(line) for line in store.get_bytes(UNKNOWN_KEY).decode().splitlines()]
    assert [row["send_id"] for row in aside] == ["ghost", "ghost"]
    # And when the delivery record lands late, the next rebuild knows them and the aside file goes away
    later = deliveries_frame([delivery("s1", 1), delivery("ghost", 2)])
    _, unknown = set_aside_unknown(store, events, later)
    assert unknown == 0
    assert not store.exists(UNKNOWN_KEY)


# --- the rules --------------------------------------------------------------------------------------


def test_unsubscribe_turns_off_that_channel_only() -> None:
    deliveries = deliveries_frame([delivery("s1", 7, channel="sms")])
    frame = build_suppression(events_frame([event("s1", "unsubscribed", T0, "sms")]), deliveries, Suppression(), now=T0)
    assert frame[["user_id", "channel", "reason"]].to_dict("records") == [
        {"user_id": "7", "channel": "sms", "reason": "unsubscribe:channel"}
    ]
    assert frame["topic"].isna().all()
    assert frame["until"].isna().all()


def test_unsubscribe_all_turns_off_every_channel() -> None:
    deliveries = deliveries_frame([delivery("s1", 7, channel="sms")])
    frame = build_suppression(
        events_frame([event("s1", "unsubscribed", T0, "sms")]), deliveries, Suppression(unsubscribe="all"), now=T0
    )
    assert frame["channel"].isna().all()
    assert frame["user_id"].tolist() == ["7"]


@pytest.mark.parametrize(
    ("now", "paused"),
    [(T0 + timedelta(days=90) - timedelta(seconds=1), True), (T0 + timedelta(days=90), False)],
)
def test_complaint_pauses_the_topic_for_exactly_topic_for(now: datetime, paused: bool) -> None:
    # Given a complaint at T0 about a promo send, When rebuilt just before / at T0 + 90d
    deliveries = deliveries_frame([delivery("s1", 7)])
    frame = build_suppression(events_frame([event("s1", "complaint", T0)]), deliveries, POLICY, now=now)
    # Then the pause runs until T0 + 90d (exclusive) and is dropped at that instant
    rows = frame[frame["reason"] == "negative:complaint"]
    assert (len(rows) == 1) is paused
    if paused:
        assert rows.iloc[0]["topic"] == "promo"
        assert rows.iloc[0]["until"] == pd.Timestamp(T0 + timedelta(days=90))


def test_policy_verb_unsubscribe_pauses_the_topic_too() -> None:
    # Given SPEC's `negative: {events: [complaint, unsubscribe]}`, When a user unsubscribes from a promo mail
    deliveries = deliveries_frame([delivery("s1", 7)])
    frame = build_suppression(events_frame([event("s1", "unsubscribed", T0)]), deliveries, POLICY, now=T0)
    # Then both the channel is off and the topic is paused
    assert sorted(frame["reason"]) == ["negative:unsubscribed", "unsubscribe:channel"]


def ignored_case(opened: set[int], *, n: int = 3, channel: str = "email") -> tuple[pd.DataFrame, pd.DataFrame]:
    sends = [delivery(f"s{i}", 7, channel=channel, sent_at=T0 + timedelta(days=i)) for i in range(n)]
    events = [event(f"s{i}", "delivered", T0 + timedelta(days=i), channel) for i in range(n)]
    events += [event(f"s{i}", "opened", T0 + timedelta(days=i, hours=1), channel) for i in opened]
    return events_frame(events), deliveries_frame(sends)


def test_three_unopened_emails_pause_the_topic_from_the_last() -> None:
    events, deliveries = ignored_case(set())
    frame = build_suppression(events, deliveries, POLICY, now=T0 + timedelta(days=3))
    (row,) = frame.to_dict("records")
    assert (row["user_id"], row["topic"], row["reason"]) == ("7", "promo", "ignored:3")
    assert row["until"] == pd.Timestamp(T0 + timedelta(days=2 + 30))


@pytest.mark.parametrize(
    ("opened", "n", "channel"),
    [({1}, 3, "email"), (set(), 2, "email"), (set(), 3, "sms")],
    ids=["one-opened", "only-two", "sms-has-no-opens"],
)
def test_ignored_needs_n_unopened_sends_on_an_open_tracked_channel(opened: set[int], n: int, channel: str) -> None:
    events, deliveries = ignored_case(opened, n=n, channel=channel)
    assert build_suppression(events, deliveries, POLICY, now=T0 + timedelta(days=3)).empty


def test_only_the_last_n_sends_count() -> None:
    # Given an opened send followed by three unopened ones, Then the topic is paused (the old open is history)
    events, deliveries = ignored_case({0}, n=4)
    frame = build_suppression(events, deliveries, POLICY, now=T0 + timedelta(days=4))
    assert frame["reason"].tolist() == ["ignored:3"]


def test_rebuild_writes_what_the_planner_reads(store: LocalStore) -> None:
    # Given an SMS unsubscribe by user 7 and a complaint by user 8, stored as the handler stores them
    put_deliveries(store, [delivery("s1", 7, channel="sms"), delivery("s2", 8)])
    write_events(
        store,
        [event("s1", "unsubscribed", T0, "sms"), event("s2", "complaint", T0), event("zz", "opened", T0)],
        batch_id="b1",
    )
    # When the snapshot is rebuilt
    frame, unknown = rebuild_suppression(store, POLICY, now=T0)
    # Then it is written with the contract's columns (7: sms off + promo paused, 8: promo paused)
    snapshot = pd.read_parquet(io.BytesIO(store.get_bytes(SUPPRESSION_KEY)))
    assert list(snapshot.columns) == ["user_id", "channel", "topic", "until", "reason"]
    assert len(snapshot) == len(frame) == 3
    assert unknown == 1
    promo = Campaign.model_validate(
        {
            "kind": "campaign",
            "id": "promo_blast",
            "name": "프로모션",
            "funnel_stage": "revenue",
            "audience": {"segment": "buyers"},
            "schedule": {"cron": "0 10 * * ? *"},
            "purpose": "advertising",
            "topic": "promo",
            "channels": ["sms", "email"],
            "variants": [
                {
                    "id": "a",
                    "weight": 1,
                    "messages": {"sms": {"template": "x"}, "email": {"template": "x", "subject": "y"}},
                }
            ],
        }
    )
    # And the planner's own reader of the snapshot blocks exactly those
    blocked = Suppressions.for_campaign(snapshot, promo, T0 + timedelta(days=1))
    assert blocked.channels["sms"] == frozenset({"7"})
    assert blocked.channels["email"] == frozenset()
    assert blocked.topic == frozenset({"7", "8"})
    assert Suppressions.for_campaign(snapshot, promo, T0 + timedelta(days=91)).topic == frozenset()


def keyed(frame: pd.DataFrame) -> set[tuple[object, ...]]:
    return {
        tuple(None if pd.isna(v) else v for v in (r.user_id, r.channel, r.topic, r.reason)) for r in frame.itertuples()
    }


def test_an_unsubscribe_is_applied_reading_only_the_recent_deliveries(counting_store: Any) -> None:
    # Given a month of deliveries (one file a day), a running topic pause of user 5, and the whole
    # log rebuilt once
    store = counting_store
    for day in range(30):
        sent = T0 + timedelta(days=day)
        store.put_bytes(
            f"deliveries/dt={sent.date()}/sms-{day}.jsonl",
            json.dumps(delivery(f"s{day}", 100 + day, channel="sms", sent_at=sent)).encode(),
        )
    store.put_bytes("deliveries/dt=2026-11-02/email-5.jsonl", json.dumps(delivery("c5", 5)).encode())
    write_events(store, [event("c5", "complaint", T0)], batch_id="b0")
    today = T0 + timedelta(days=29, hours=2)
    rebuild_suppression(store, POLICY, now=today)
    store.reads.clear()
    # When user 129 unsubscribes from today's SMS, and an unknown send id comes with it
    unsubscribe = make_events_frame([event("s29", "unsubscribed", today, "sms"), event("zz", "unsubscribed", today)])
    frame, unknown = apply_reactions(store, unsubscribe, POLICY, now=today)
    # Then the known send was found in today's deliveries first (the unknown one is counted, not
    # guessed), and the snapshot has the new rows next to the running pause
    assert next(key for key in store.reads if key.startswith("deliveries/")) == "deliveries/dt=2026-12-01/sms-29.jsonl"
    assert unknown == 1
    rows = keyed(frame)
    assert rows == {
        ("5", None, "promo", "negative:complaint"),
        ("129", "sms", None, "unsubscribe:channel"),
        ("129", None, "promo", "negative:unsubscribed"),
    }
    # And a complaint about a send of today reads that one day of deliveries, nothing older
    store.reads.clear()
    apply_reactions(store, make_events_frame([event("s29", "complaint", today, "sms")]), POLICY, now=today)
    assert [key for key in store.reads if key.startswith("deliveries/")] == ["deliveries/dt=2026-12-01/sms-29.jsonl"]
    # And the full rebuild agrees
    write_events(store, [event("s29", "unsubscribed", today, "sms")], batch_id="b1")
    rebuilt, _ = rebuild_suppression(store, POLICY, now=today)
    assert keyed(rebuilt) == rows


def test_user_ids_typed_differently_across_and_within_files_all_load(store: LocalStore) -> None:
    # Given one delivery file with integer ids, one with text ids, and one mixing both on different lines
    rows = [delivery("s1", 1), {**delivery("s2", 2), "user_id": "u-2"}]
    store.put_bytes("deliveries/dt=2026-11-02/a.jsonl", json.dumps(rows[0]).encode())
    store.put_bytes("deliveries/dt=2026-11-02/b.jsonl", json.dumps(rows[1]).encode())
    store.put_bytes("deliveries/dt=2026-11-03/c.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    # When read back (bulk Arrow parse, falling back per file), Then every row is there with its id as written
    from funnelcast.feedback.ingest import read_deliveries

    frame = read_deliveries(store)
    assert sorted(map(str, frame["user_id"])) == ["1", "1", "u-2", "u-2"]
    assert str(frame["sent_at"].dt.tz) == "UTC"
    # And `since` prunes earlier day partitions
    assert len(read_deliveries(store, since=datetime(2026, 11, 3).date())) == 2


def test_push_status_without_send_id_resolves_through_the_provider_message_id(store: LocalStore) -> None:
    # Given SNS's own delivery-status records (no send_id, only SNS's MessageId), one for a known publish
    from feedback_payloads import push_status

    from funnelcast.feedback.normalize import parse_push_status

    records = [
        push_status("", "FAILURE", "2026-11-02T01:00:01Z", message_id="sns-abc"),
        push_status("", "SUCCESS", "2026-11-02T01:00:01Z", message_id="sns-zzz"),
    ]
    events = [parse_push_status({**r, "send_id": None}) for r in records]
    assert events[0].send_id == "provider:sns-abc"
    deliveries = deliveries_frame([{**delivery("p1", 7, channel="push"), "provider_message_id": "sns-abc"}])
    # When the log is matched with the deliveries
    known, unknown = set_aside_unknown(store, events_frame(events), deliveries)
    # Then the failure lands on send p1; the unmatched one is kept aside and counted
    assert known[["send_id", "type"]].to_dict("records") == [{"send_id": "p1", "type": "failed"}]
    assert unknown == 1


# --- properties -------------------------------------------------------------------------------------

SENDS = st.lists(
    st.tuples(
        st.integers(1, 4),
        st.sampled_from(["email", "sms"]),
        st.sampled_from(["promo", "news", None]),
        st.integers(0, 40),
    ),
    min_size=1,
    max_size=12,
)
# after: 1 so that short random histories exercise the ignored rule too
PROPERTY_POLICY = POLICY.model_copy(update={"ignored": POLICY.ignored.model_copy(update={"after": 1})})  # type: ignore[union-attr]
REACTIONS = st.lists(
    st.tuples(
        st.integers(0, 11),
        st.sampled_from(["delivered", "opened", "clicked", "unsubscribed", "complaint"]),
        st.integers(0, 60),
    ),
    max_size=25,
)


def scenario(
    sends: list[tuple[int, str, str | None, int]], reactions: list[tuple[int, str, int]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        delivery(f"s{i}", user, channel=channel, topic=topic, sent_at=T0 + timedelta(days=day))
        for i, (user, channel, topic, day) in enumerate(sends)
    ]
    events = [
        event(f"s{index % len(sends)}", kind, T0 + timedelta(days=day), event_id=f"e{n}")
        for n, (index, kind, day) in enumerate(reactions)
    ]
    return events_frame(events), deliveries_frame(rows)


@settings(max_examples=20, deadline=None)
@given(SENDS, REACTIONS, st.integers(0, 120))
def test_suppression_invariants(
    sends: list[tuple[int, str, str | None, int]], reactions: list[tuple[int, str, int]], day: int
) -> None:
    events, deliveries = scenario(sends, reactions)
    now = T0 + timedelta(days=day)
    frame = build_suppression(events, deliveries, PROPERTY_POLICY, now=now)
    # One row per (user, channel, topic); nothing expired is kept
    assert not frame.duplicated(["user_id", "channel", "topic"]).any()
    assert (frame["until"].isna() | (frame["until"] > pd.Timestamp(now))).all()
    # Channel consent is off exactly for the (user, channel) pairs whose sends were unsubscribed from
    joined = events.merge(deliveries[["send_id", "user_id", "channel"]], on="send_id", suffixes=("_event", ""))
    unsubscribed = joined[joined["type"] == "unsubscribed"]
    expected = {(str(u), c) for u, c in zip(unsubscribed["user_id"], unsubscribed["channel"], strict=True)}
    consent = frame[frame["reason"] == "unsubscribe:channel"]
    assert set(zip(consent["user_id"], consent["channel"], strict=True)) == expected
    # Only open-tracked channels' silence pauses a topic, and only for a user who was sent that topic
    ignored = frame[frame["reason"].str.startswith("ignored")]
    sent_topics = {(str(u), t) for u, c, t, _ in sends if c in OPEN_TRACKED_CHANNELS and t}
    assert set(zip(ignored["user_id"], ignored["topic"], strict=True)) <= sent_topics


@settings(max_examples=12, deadline=None)
@given(SENDS, REACTIONS, st.integers(0, 11))
def test_opening_a_message_never_adds_a_suppression(
    sends: list[tuple[int, str, str | None, int]], reactions: list[tuple[int, str, int]], index: int
) -> None:
    # Given any history, When one more open arrives, Then the suppression rows can only shrink
    events, deliveries = scenario(sends, reactions)
    now = T0 + timedelta(days=45)
    before = build_suppression(events, deliveries, PROPERTY_POLICY, now=now)
    opened, _ = scenario(sends, [*reactions, (index, "opened", 44)])
    after = build_suppression(opened, deliveries, PROPERTY_POLICY, now=now)
    keys = ["user_id", "channel", "topic", "reason"]
    assert set(map(tuple, after[keys].astype(str).to_numpy())) <= set(map(tuple, before[keys].astype(str).to_numpy()))
