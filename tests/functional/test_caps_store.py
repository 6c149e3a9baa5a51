"""The DynamoDB cap store under moto: one write per reservation, retries, fallback moves, release, snapshot."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from funnelcast.caps.policy import (
    Reservation,
    SendEntry,
    UserCapState,
    WeekUsage,
    first_refusing_cap,
    first_refusing_move_cap,
    week_key,
)
from funnelcast.caps.store import CapStore, user_pk
from funnelcast.errors import CapStoreError
from funnelcast.rules.models import Policy

REGION = "ap-northeast-2"
TABLE = "funnelcast-caps-test"
WEDNESDAY = date(2026, 12, 2)
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
POLICY = Policy.model_validate(
    {
        "kind": "policy",
        "caps": [
            {"max": 2, "per": "day"},
            {"max": 5, "per": "week"},
            {"max": 1, "per": "day", "channel": "sms"},
            {"max": 3, "per": "week", "topic": "promo"},
            {"max": 1, "per": "week", "campaign": "vip"},
        ],
    }
)


def create_cap_table(ddb: Any, name: str = TABLE) -> None:
    """The CapTable of docs/ARCHITECTURE.md: pk (S), sk (S), TTL expires_at."""
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


@dataclass
class RequestLog:
    """Every DynamoDB operation a client sent (botocore ``before-call`` hook)."""

    calls: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def take(self) -> Counter[str]:
        counted = Counter(self.calls)
        self.calls.clear()
        return counted


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_cap_table(client)
        yield client


@pytest.fixture
def requests(ddb: Any) -> RequestLog:
    log = RequestLog()
    ddb.meta.events.register("before-call.dynamodb.*", log)
    return log


@pytest.fixture
def store(ddb: Any) -> CapStore:
    return CapStore(TABLE, POLICY, dynamodb_client=ddb)


def reservation(send_id: str, channel: str = "email", **changes: Any) -> Reservation:
    base = Reservation(
        user_id=1,
        send_id=send_id,
        campaign_id="cart",
        channel=channel,
        topic=None,
        local_day=WEDNESDAY,
        sent_at=NOW,
        resend_after=None,
    )
    return replace(base, **changes)


def item(ddb: Any, user: int | str = 1, day: date = WEDNESDAY, table: str = TABLE) -> dict[str, Any]:
    key = {"pk": {"S": user_pk(user)}, "sk": {"S": f"w#{week_key(day)}"}}
    found: dict[str, Any] = ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {})
    return found


def number(found: dict[str, Any], name: str) -> int:
    return int(found.get(name, {"N": "0"})["N"])


def test_new_send_is_exactly_one_conditional_write(store: CapStore, ddb: Any, requests: RequestLog) -> None:
    # Given an empty cap table, When a send is reserved
    result = store.reserve(reservation("s1", "sms", topic="promo"))
    # Then it is reserved with exactly one UpdateItem and nothing else
    assert result.status == "reserved"
    assert requests.take() == Counter({"UpdateItem": 1})
    # and the week item of the user's local ISO week counts it everywhere, with a TTL after the week
    found = item(ddb)
    for name in ("n_w", "n_d3", "n_w_ch_sms", "n_d3_ch_sms", "n_w_tp_promo", "n_w_cp_cart"):
        assert number(found, name) == 1, name
    assert found["s_s1"]["S"].startswith("sms|3|cart|promo|")
    week_end = datetime(2026, 12, 7, tzinfo=UTC)
    assert int(found["expires_at"]["N"]) >= int((week_end + timedelta(weeks=13)).timestamp())


def test_retry_with_the_same_send_id_is_not_counted_twice(store: CapStore, ddb: Any, requests: RequestLog) -> None:
    store.reserve(reservation("s1", "sms"))
    requests.take()
    # When the sender retries the same send id on the same channel (SQS redelivery)
    result = store.reserve(reservation("s1", "sms", sent_at=NOW + timedelta(minutes=5)))
    # Then it is recognised in one request (the failed condition returns the item) and counted once
    assert result.status == "already_reserved"
    assert requests.take() == Counter({"UpdateItem": 1})
    assert number(item(ddb), "n_w") == 1


@pytest.mark.parametrize(
    ("history", "attempt", "cap"),
    [
        ([("a", "email", {}), ("b", "push", {})], ("c", "kakao_brand", {}), "day"),
        ([("a", "sms", {})], ("c", "sms", {}), "day:sms"),
        (
            [("a", "email", {"topic": "promo", "local_day": WEDNESDAY - timedelta(days=d)}) for d in (0, 1, 2)],
            ("c", "push", {"topic": "promo", "local_day": WEDNESDAY + timedelta(days=1)}),
            "week:topic:promo",
        ),
        (
            [("a", "email", {"local_day": WEDNESDAY + timedelta(days=d)}) for d in (-2, -1, 0)]
            + [("b", "email", {"local_day": WEDNESDAY + timedelta(days=d)}) for d in (1, 2)],
            ("c", "push", {"local_day": WEDNESDAY + timedelta(days=3)}),
            "week",
        ),
        ([("a", "email", {"campaign_id": "vip"})], ("c", "push", {"campaign_id": "vip"}), "week:campaign:vip"),
        (
            [("a", "email", {"resend_after": timedelta(days=1)})],
            ("c", "push", {"resend_after": timedelta(days=1), "sent_at": NOW + timedelta(hours=23)}),
            "resend_after",
        ),
    ],
)
def test_refusal_names_the_cap_and_changes_nothing(  # noqa: PLR0917
    store: CapStore, ddb: Any, requests: RequestLog, history: list[Any], attempt: Any, cap: str
) -> None:
    # Given a history of reserved sends (distinct send ids per day)
    for number_, (send_id, channel, changes) in enumerate(history):
        assert store.reserve(reservation(f"{send_id}{number_}", channel, **changes)).status == "reserved"
    before = {key: item(ddb, day=day) for key, day in (("w", WEDNESDAY),)}
    requests.take()
    # When one more send would break a cap
    send_id, channel, changes = attempt
    result = store.reserve(reservation(send_id, channel, **changes))
    # Then it is refused by that cap, in one request, and the item is untouched
    assert (result.status, result.cap) == ("refused", cap)
    assert requests.take() == Counter({"UpdateItem": 1})
    assert {"w": item(ddb)} == before


def test_resend_after_exactly_elapsed_is_allowed(store: CapStore) -> None:
    first = reservation("a", resend_after=timedelta(hours=2))
    assert store.reserve(first).status == "reserved"
    later = reservation("b", "push", resend_after=timedelta(hours=2), sent_at=NOW + timedelta(hours=2))
    assert store.reserve(later).status == "reserved"


def test_fallback_moves_the_place_to_the_next_channel(store: CapStore, ddb: Any, requests: RequestLog) -> None:
    # Given a send reserved on kakao_brand
    assert store.reserve(reservation("s1", "kakao_brand", topic="promo")).status == "reserved"
    requests.take()
    # When Kakao refuses the user and the sender retries the same send id on sms
    result = store.reserve(reservation("s1", "sms", topic="promo", sent_at=NOW + timedelta(minutes=1)))
    # Then it is moved by one failed conditional write (it returns the item) plus the move
    assert result.status == "reserved"
    assert requests.take() == Counter({"UpdateItem": 2})
    # and the per-channel counters moved, totals did not change (one send, one place)
    found = item(ddb)
    assert (number(found, "n_w_ch_kakao_brand"), number(found, "n_w_ch_sms"), number(found, "n_d3_ch_sms")) == (0, 1, 1)
    assert (number(found, "n_w"), number(found, "n_d3"), number(found, "n_w_tp_promo")) == (1, 1, 1)
    assert found["s_s1"]["S"].startswith("sms|")
    # and a redelivered sms job is a retry, not a third channel
    assert store.reserve(reservation("s1", "sms", topic="promo")).status == "already_reserved"
    # and a late redelivery of the kakao job never moves the place back (the send state skips it)
    assert store.reserve(reservation("s1", "kakao_brand", topic="promo")).status == "already_reserved"
    found = item(ddb)
    assert (number(found, "n_w_ch_kakao_brand"), number(found, "n_w_ch_sms")) == (0, 1)
    assert found["s_s1"]["S"].endswith("|kakao_brand")


def test_fallback_refused_by_the_new_channel_cap_keeps_the_old_place(store: CapStore, ddb: Any) -> None:
    # Given one sms send today (1 sms/day) and another send reserved on push
    assert store.reserve(reservation("a", "sms")).status == "reserved"
    assert store.reserve(reservation("b", "push")).status == "reserved"
    # When the push send falls back to sms
    result = store.reserve(reservation("b", "sms"))
    # Then the sms cap refuses the move and the place stays on push (the sender then releases it)
    assert (result.status, result.cap) == ("refused", "day:sms")
    assert item(ddb)["s_b"]["S"].startswith("push|")
    store.release(reservation("b", "sms"))
    found = item(ddb)
    assert "s_b" not in found
    assert (number(found, "n_w"), number(found, "n_w_ch_push"), number(found, "n_w_ch_sms")) == (1, 0, 1)


def test_release_gives_the_place_back_and_is_idempotent(store: CapStore, ddb: Any) -> None:
    # Given the day full (2/day)
    assert store.reserve(reservation("a", "email", resend_after=timedelta(days=7))).status == "reserved"
    assert store.reserve(reservation("b", "push", campaign_id="other")).status == "reserved"
    assert store.reserve(reservation("c", "kakao_brand", campaign_id="third")).cap == "day"
    # When the first send finally fails and is released (twice: a redelivery)
    store.release(reservation("a", "email"))
    store.release(reservation("a", "email"))
    # Then its place is free again, counters went back once, and resend_after no longer blocks
    found = item(ddb)
    assert (number(found, "n_w"), number(found, "n_d3"), number(found, "n_w_cp_cart")) == (1, 1, 0)
    assert "ls_cart" not in found
    assert store.reserve(reservation("a2", "email", resend_after=timedelta(days=7))).status == "reserved"


def test_release_after_midnight_sunday_finds_the_previous_week(store: CapStore, ddb: Any) -> None:
    # Given a send reserved late on a Sunday (local), When its final failure comes on Monday
    sunday = date(2026, 12, 6)
    assert store.reserve(reservation("a", local_day=sunday)).status == "reserved"
    store.release(reservation("a", local_day=sunday + timedelta(days=1)))
    # Then the Sunday week's place is given back
    assert number(item(ddb, day=sunday), "n_w") == 0


def test_days_and_weeks_are_the_users_local_calendar(store: CapStore, ddb: Any) -> None:
    # Given the same UTC instant, which is Sunday in New York and Monday in Seoul
    instant = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    for user, local_day in ((10, date(2026, 12, 6)), (11, date(2026, 12, 7))):
        store.reserve(reservation("a", user_id=user, local_day=local_day, sent_at=instant))
    # Then each is counted in its own local ISO week and weekday
    assert number(item(ddb, 10, date(2026, 12, 6)), "n_d7") == 1
    assert number(item(ddb, 11, date(2026, 12, 7)), "n_d1") == 1
    assert item(ddb, 10, date(2026, 12, 7)) == {}


def test_int_and_string_user_ids_stay_apart(store: CapStore) -> None:
    assert store.reserve(reservation("a", "sms", user_id=123)).status == "reserved"
    assert store.reserve(reservation("b", "sms", user_id="123")).status == "reserved"
    snapshot = store.usage_snapshot()
    assert set(snapshot) == {123, "123"}


def test_usage_snapshot_is_one_scan_and_matches_the_items(store: CapStore, ddb: Any, requests: RequestLog) -> None:
    # Given 40 users with sends over two weeks
    for user in range(40):
        for offset in (0, 7):
            store.reserve(reservation(f"s{offset}", "sms", user_id=user, local_day=WEDNESDAY + timedelta(days=offset)))
    requests.take()
    # When the planner takes the usage snapshot with 4 parallel segments
    snapshot = store.usage_snapshot(segments=4)
    # Then it is only Scan requests (never a read per user) and holds every user's two weeks
    assert set(requests.take()) == {"Scan"}
    assert set(snapshot) == set(range(40))
    assert sorted(snapshot[5].weeks) == [week_key(WEDNESDAY), week_key(WEDNESDAY + timedelta(days=7))]
    assert snapshot[5] == store.user_state(5)
    # and "since" keeps only recent weeks
    recent = store.usage_snapshot(since=WEDNESDAY + timedelta(days=7))
    assert sorted(recent[5].weeks) == [week_key(WEDNESDAY + timedelta(days=7))]


def test_usage_of_reads_only_the_asked_users_and_weeks_in_batches(
    store: CapStore, ddb: Any, requests: RequestLog
) -> None:
    # Given 150 users with sends in two weeks
    for user in range(150):
        for offset in (0, 7):
            store.reserve(reservation(f"s{offset}", "sms", user_id=user, local_day=WEDNESDAY + timedelta(days=offset)))
    requests.take()
    # When the planner asks for 120 of them, in the later week only
    later = week_key(WEDNESDAY + timedelta(days=7))
    usage = store.usage_of(dict.fromkeys(range(30, 150), (later,)))
    # Then it is two BatchGetItem requests (100 keys each at most), never a Scan or a read per user
    assert requests.take() == Counter({"BatchGetItem": 2})
    assert set(usage) == set(range(30, 150))
    assert sorted(usage[42].weeks) == [later]
    assert usage[42].weeks[later] == store.user_state(42).weeks[later]
    # and users or weeks without items are simply absent
    assert store.usage_of({5: [week_key(WEDNESDAY - timedelta(days=7))], 999: [later]}) == {}


def test_usage_of_scans_once_when_the_keys_outnumber_the_limit(ddb: Any, requests: RequestLog) -> None:
    # Given a store that batch-gets at most 50 keys
    store = CapStore(TABLE, POLICY, dynamodb_client=ddb, batch_key_limit=50)
    for user in range(40):
        for offset in (-7, 0):
            store.reserve(reservation(f"s{offset}", "sms", user_id=user, local_day=WEDNESDAY + timedelta(days=offset)))
    requests.take()
    # When 30 of the 40 users x 2 weeks (60 keys) are asked for
    usage = store.usage_of(dict.fromkeys(range(30), (week_key(WEDNESDAY - timedelta(days=7)), week_key(WEDNESDAY))))
    # Then one Scan answers, restricted to the asked users
    assert set(requests.take()) == {"Scan"}
    assert set(usage) == set(range(30))
    assert usage[3] == store.user_state(3)


def test_usage_of_retries_unprocessed_keys(store: CapStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given DynamoDB leaves half the keys of the first BatchGetItem unprocessed (throttling)
    for user in range(4):
        store.reserve(reservation("a", "sms", user_id=user))
    real = store.client.batch_get_item
    answers: list[int] = []

    def throttled(**request: Any) -> dict[str, Any]:
        keys = request["RequestItems"][TABLE]["Keys"]
        if not answers:
            answers.append(len(keys))
            page: dict[str, Any] = real(RequestItems={TABLE: {"Keys": keys[:2]}})
            page["UnprocessedKeys"] = {TABLE: {"Keys": keys[2:]}}
            return page
        answers.append(len(keys))
        return dict(real(**request))

    monkeypatch.setattr(store.client, "batch_get_item", throttled)
    monkeypatch.setattr("funnelcast.caps.store.sleep", lambda seconds: None)
    # When the usage of the four users is read
    usage = store.usage_of(dict.fromkeys(range(4), (week_key(WEDNESDAY),)))
    # Then the unprocessed keys were asked again and nothing is missing
    assert answers == [4, 2]
    assert set(usage) == {0, 1, 2, 3}


def test_usage_of_gives_up_clearly_when_keys_stay_unprocessed(store: CapStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def always_throttled(**request: Any) -> dict[str, Any]:
        return {"Responses": {}, "UnprocessedKeys": request["RequestItems"]}

    monkeypatch.setattr(store.client, "batch_get_item", always_throttled)
    monkeypatch.setattr("funnelcast.caps.store.sleep", lambda seconds: None)
    with pytest.raises(CapStoreError, match="unprocessed after 8 attempts"):
        store.usage_of({1: [week_key(WEDNESDAY)]})


def test_the_planner_and_the_store_agree_on_a_user(store: CapStore) -> None:
    # Given a user with two sends today, read back through the snapshot
    store.reserve(reservation("a", "sms"))
    store.reserve(reservation("b", "email", campaign_id="vip"))
    state = store.usage_snapshot()[1]
    common = {"topic": None, "local_day": WEDNESDAY, "sent_at": NOW, "resend_after": None}
    # Then the pure policy refuses exactly what the store refuses
    assert first_refusing_cap(POLICY, state, channel="push", campaign_id="x", **common) == "day"  # type: ignore[arg-type]
    assert store.reserve(reservation("c", "push", campaign_id="x")).cap == "day"


def test_errors_become_cap_store_errors(ddb: Any) -> None:
    missing = CapStore("no-such-table", POLICY, dynamodb_client=ddb)
    with pytest.raises(CapStoreError, match=r"no-such-table.*ResourceNotFoundException"):
        missing.reserve(reservation("a"))
    with pytest.raises(CapStoreError, match="no-such-table"):
        missing.usage_snapshot()
    with pytest.raises(CapStoreError, match="send_id"):
        CapStore(TABLE, POLICY, dynamodb_client=ddb).reserve(reservation("bad id with spaces"))
    with pytest.raises(CapStoreError, match="CAP_TABLE"):
        CapStore("", POLICY)


def test_zero_cap_refuses_without_writing(ddb: Any, requests: RequestLog) -> None:
    policy = Policy.model_validate({"kind": "policy", "caps": [{"max": 0, "per": "day", "channel": "sms"}]})
    zero = CapStore(TABLE, policy, dynamodb_client=ddb)
    assert zero.reserve(reservation("a", "sms")).cap == "day:sms"
    assert "UpdateItem" not in requests.take()
    assert zero.reserve(reservation("a", "email")).status == "reserved"


FRESH_USERS = itertools.count(10_000)
attempt = st.tuples(
    st.sampled_from(["email", "sms", "push"]),
    st.sampled_from([None, "promo"]),
    st.sampled_from(["cart", "vip", "welcome"]),
    st.integers(0, 8),  # days after Monday 2026-11-30: crosses into the next ISO week
    st.sampled_from([None, timedelta(days=1), timedelta(days=3)]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(attempt, min_size=1, max_size=14))
def test_store_decides_like_the_pure_policy(store: CapStore, tried: list[Any]) -> None:
    # Given a fresh user (one per example: the table outlives examples) and attempts in time order
    user = next(FRESH_USERS)
    state = UserCapState.empty(user)
    for number_, (channel, topic, campaign, offset, resend) in enumerate(sorted(tried, key=lambda a: a[3])):
        local_day = date(2026, 11, 30) + timedelta(days=offset)
        sent_at = datetime.combine(local_day, datetime.min.time(), UTC) + timedelta(hours=number_)
        # The store checks resend_after within the week item; the planner's state sees all weeks
        week_only = UserCapState(user, {k: v for k, v in state.weeks.items() if k == week_key(local_day)})
        common = {"channel": channel, "topic": topic, "campaign_id": campaign, "local_day": local_day}
        expected = first_refusing_cap(POLICY, week_only, sent_at=sent_at, resend_after=resend, **common)
        # When the store reserves it
        result = store.reserve(Reservation(user, f"s{number_}", campaign, channel, topic, local_day, sent_at, resend))
        # Then it refuses with the same cap or reserves when the policy says it fits
        assert (result.status, result.cap) == (("reserved", None) if expected is None else ("refused", expected))
        if expected is None:
            state = state.with_send(send_id=f"s{number_}", sent_at=sent_at, **common)
    # and the stored counters are exactly the model's
    stored = store.user_state(user)
    for week, usage in state.weeks.items():
        assert {k: v for k, v in stored.week(week).counters.items() if v} == dict(usage.counters)


def test_template_cap_table_through_settings(aws: Any) -> None:
    # Given the CapTable of template.yaml and the store built the way the senders build it
    settings = aws.settings
    table = aws.client("dynamodb").describe_table(TableName=settings.cap_table)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    ttl = aws.client("dynamodb").describe_time_to_live(TableName=settings.cap_table)["TimeToLiveDescription"]
    assert ttl.get("AttributeName") == "expires_at"
    store = CapStore(settings.cap_table, POLICY)  # the shared lazy client, created on first use
    # When a send is reserved, retried and released
    assert store.reserve(reservation("s1", "sms")).status == "reserved"
    assert store.reserve(reservation("s1", "sms")).status == "already_reserved"
    store.release(reservation("s1", "sms"))
    # Then the user holds no place and the item carries the TTL attribute
    assert store.user_state(1).week(week_key(WEDNESDAY)).count("n_w") == 0
    assert "expires_at" in item(aws.client("dynamodb"), table=settings.cap_table)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.sampled_from(["email", "sms", "push"]), st.sampled_from([None, "promo"])),
        st.tuples(st.just("retry"), st.integers(0, 9), st.none()),
        st.tuples(st.just("fallback"), st.integers(0, 9), st.sampled_from(["email", "sms", "push", "kakao_brand"])),
        st.tuples(st.just("release"), st.integers(0, 9), st.none()),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_reserve_retry_fallback_release_match_the_model(store: CapStore, ops: list[Any]) -> None:
    # Given a fresh user and a random mix of new sends, retries, fallbacks and releases on one day
    user = next(FRESH_USERS)
    model = WeekUsage(week_key(WEDNESDAY))
    made: list[Reservation] = []
    for op, arg, extra in ops:
        if op == "reserve":
            target = reservation(f"n{len(made)}", arg, user_id=user, topic=extra, campaign_id=f"c{len(made)}")
            made.append(target)
        elif not made:
            continue
        else:
            target = made[arg % len(made)]
            if op == "fallback":
                target = replace(target, channel=extra)
        held = model.sends.get(target.send_id)
        # The model's answer: pure policy on the model's week
        if op == "release":
            store.release(target)
            model = model.without_send(target.send_id)
            continue
        if held is None:
            state = UserCapState(user, {model.week: model})
            cap = first_refusing_cap(
                POLICY,
                state,
                channel=target.channel,
                topic=target.topic,
                campaign_id=target.campaign_id,
                local_day=WEDNESDAY,
                sent_at=NOW,
                resend_after=None,
            )
            expected = ("reserved", None) if cap is None else ("refused", cap)
            if cap is None:
                entry = SendEntry(
                    target.send_id, target.channel, 3, target.campaign_id, target.topic, int(NOW.timestamp())
                )
                model = model.with_send(entry)
        elif target.channel == held.channel or target.channel in held.moved_from:
            expected = ("already_reserved", None)
        else:
            cap = first_refusing_move_cap(POLICY, model, held, target.channel)
            expected = ("reserved", None) if cap is None else ("refused", cap)
            if cap is None:
                model = model.with_channel(target.send_id, target.channel)
        # When the store does the same, Then it answers the same
        result = store.reserve(target)
        assert (result.status, result.cap) == expected, (op, target)
    # and holds exactly the model's counters and sends
    stored = store.user_state(user).week(model.week)
    assert {k: v for k, v in stored.counters.items() if v} == {k: v for k, v in model.counters.items() if v}
    assert stored.sends == dict(model.sends)


def test_the_job_rule_set_policy_can_override_the_stores(store: CapStore) -> None:
    # Given a store built with the policy of its cold start (2/day) and a send today
    assert store.reserve(reservation("a", "email")).status == "reserved"
    # When the rules changed to 1/day and the sender passes the job's policy
    stricter = Policy.model_validate({"kind": "policy", "caps": [{"max": 1, "per": "day"}]})
    # Then the new cap applies to this reservation, and the store's own policy to the next one
    assert store.reserve(reservation("b", "push"), policy=stricter).cap == "day"
    assert store.reserve(reservation("b", "push")).status == "reserved"
