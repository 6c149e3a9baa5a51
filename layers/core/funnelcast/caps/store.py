"""The cap table (DynamoDB): one conditional ``UpdateItem`` reserves a send against every cap.

Item shape (table keys ``pk`` / ``sk``, TTL ``expires_at``), one item per user per LOCAL ISO week::

    pk = "u#<user_id>"  (int ids as digits, string ids as "u#s:<id>": 123 and "123" stay apart)
    sk = "w#2026-W49"
    n_w, n_d3, n_w_ch_sms, n_d3_ch_sms, n_w_tp_promo, n_w_cp_cart, ...   counters (policy.py names)
    s_<send_id> = "sms|3|cart|promo|1764576000|kakao_brand"   the reserved sends: channel, weekday,
                                                  campaign, topic, sent_at, channels it fell back from
    ls_<campaign> = 1764576000                    latest reserved send of the campaign this week
    expires_at = end of the week + retention      (TTL)

``reserve`` is exactly ONE write for a new send: ``ADD`` every counter, ``SET`` the send and
``ls_<campaign>``, under a condition that the send id is new, every applicable cap's counter is
below its max and the campaign's ``ls`` is at least ``resend_after`` old. On a failed condition
DynamoDB returns the item (``ReturnValuesOnConditionCheckFailure=ALL_OLD``), so no read is needed
to tell apart a retry (``already_reserved``), a waterfall fallback (the send id is held under
another channel: a second conditional write moves the per-channel counters, checking the new
channel's caps; totals unchanged) and a refusal (the pure policy names the refusing cap). A
late redelivery of a channel the send already fell back FROM is ``already_reserved`` too: the
place never moves back (the sender's send state then skips that stale attempt).

``resend_after`` across week boundaries (the choice): the write checks ``ls_<campaign>`` of the
send's own week item only, because a single ``UpdateItem`` touches one item and a transaction per
send would double the write cost. Across weeks the planner enforces it exactly from
``usage_of`` (the user's week items back over ``resend_after``), and run-level send ids make
a second run of the same campaign a different plan, not a race. Keep ``retention`` longer than the
longest ``resend_after`` (default 13 weeks covers 90 days).

A retry or fallback whose local day falls in a LATER ISO week than the original reservation is
counted again in the new week; that errs towards fewer messages, never more.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from time import sleep
from typing import Any

from funnelcast.aws.clients import client as shared_client
from funnelcast.aws.clients import error_code
from funnelcast.caps.policy import (
    Reservation,
    ReserveResult,
    SendEntry,
    UserCapState,
    WeekUsage,
    applicable_caps,
    cap_counter,
    channel_counter_names,
    epoch_seconds,
    first_refusing_cap,
    first_refusing_move_cap,
    move_caps,
    previous_week_key,
    week_key,
    week_monday,
)
from funnelcast.errors import CapStoreError
from funnelcast.rules.models import Policy

DEFAULT_RETENTION = timedelta(weeks=13)
_CONDITION_FAILED = "ConditionalCheckFailedException"
_MAX_ATTEMPTS = 5
_USER_PREFIX = "u#"
_STRING_USER_PREFIX = "u#s:"
_WEEK_PREFIX = "w#"
_SEND_PREFIX = "s_"
_LAST_PREFIX = "ls_"
_BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem
_MAX_BATCH_ATTEMPTS = 8
_BACKOFF_BASE_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 2.0
DEFAULT_BATCH_KEY_LIMIT = 20_000
_SEND_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def user_pk(user_id: int | str) -> str:
    """Partition key of a user: ``u#123`` for int ids, ``u#s:abc`` for string ids."""
    if isinstance(user_id, bool) or not isinstance(user_id, int | str):
        raise CapStoreError(f"user_id must be an int or a str, got {type(user_id).__name__}")
    return f"{_USER_PREFIX}{user_id}" if isinstance(user_id, int) else f"{_STRING_USER_PREFIX}{user_id}"


def user_from_pk(pk: str) -> int | str:
    if pk.startswith(_STRING_USER_PREFIX):
        return pk[len(_STRING_USER_PREFIX) :]
    return int(pk[len(_USER_PREFIX) :])


def week_sk(key: str) -> str:
    return f"{_WEEK_PREFIX}{key}"


def usage_from_item(item: Mapping[str, Any]) -> WeekUsage:
    """A week item in DynamoDB JSON -> :class:`WeekUsage` (unknown attributes ignored)."""
    counters: dict[str, int] = {}
    sends: dict[str, SendEntry] = {}
    last: dict[str, int] = {}
    for name, value in item.items():
        if name.startswith("n_") and "N" in value:
            counters[name] = int(value["N"])
        elif name.startswith(_SEND_PREFIX) and "S" in value:
            send_id = name[len(_SEND_PREFIX) :]
            sends[send_id] = SendEntry.decode(send_id, value["S"])
        elif name.startswith(_LAST_PREFIX) and "N" in value:
            last[name[len(_LAST_PREFIX) :]] = int(value["N"])
    return WeekUsage(item["sk"]["S"][len(_WEEK_PREFIX) :], counters, sends, last)


class _Expression:
    """Builds placeholders for one request (moto and DynamoDB reject unused ones)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, dict[str, str]] = {}

    def name(self, attribute: str) -> str:
        for placeholder, existing in self.names.items():
            if existing == attribute:
                return placeholder
        placeholder = f"#a{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def number(self, value: int) -> str:
        return self._value({"N": str(value)})

    def string(self, value: str) -> str:
        return self._value({"S": value})

    def _value(self, typed: dict[str, str]) -> str:
        for placeholder, existing in self.values.items():
            if existing == typed:
                return placeholder
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = typed
        return placeholder

    def below(self, attribute: str, maximum: int) -> str:
        """``attribute`` missing or ``< maximum`` (a missing counter is zero)."""
        name = self.name(attribute)
        return f"(attribute_not_exists({name}) OR {name} < {self.number(maximum)})"

    def request(self, update: str, condition: str) -> dict[str, Any]:
        return {
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": self.names,
            "ExpressionAttributeValues": self.values,
        }


class CapStore:
    """Atomic fatigue caps in the cap table; see the module docstring for the item and the choices.

    Parameters
    ----------
    table_name
        The cap table (``CAP_TABLE``).
    policy
        The active policy: its caps are checked on every reservation.
    dynamodb_client
        A boto3 DynamoDB client; the shared lazy client when omitted (created on first use).
    retention
        How long after its week ends an item lives (TTL); longer than the longest ``resend_after``.
    batch_key_limit
        Above this many user-week keys, :meth:`usage_of` scans instead of batch-getting (a
        BatchGetItem reads each key; a Scan reads the table once, in 1 MB pages).
    """

    def __init__(
        self,
        table_name: str,
        policy: Policy,
        *,
        dynamodb_client: Any = None,
        retention: timedelta = DEFAULT_RETENTION,
        batch_key_limit: int = DEFAULT_BATCH_KEY_LIMIT,
    ) -> None:
        if not table_name:
            raise CapStoreError("the cap table name is empty (set CAP_TABLE)")
        self.table_name = table_name
        self.policy = policy
        self.retention = retention
        self.batch_key_limit = batch_key_limit
        self._client = dynamodb_client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = shared_client("dynamodb")
        return self._client

    # ---------------------------------------------------------------- reserve
    def reserve(self, reservation: Reservation, *, policy: Policy | None = None) -> ReserveResult:
        """Reserve ``reservation``'s place against every applicable cap in one conditional write.

        Returns ``reserved`` (counted now, or moved from another channel), ``already_reserved``
        (a retry of the same send id on the same channel: not counted twice) or ``refused`` with
        the refusing cap's name. Raises :class:`CapStoreError` when the table cannot be used.
        ``policy`` overrides the store's (the rule set of the job being sent, when rules changed).
        """
        _check_send_id(reservation.send_id)
        policy = policy if policy is not None else self.policy
        caps = applicable_caps(
            policy, channel=reservation.channel, topic=reservation.topic, campaign_id=reservation.campaign_id
        )
        key = self._key(reservation.user_id, week_key(reservation.local_day))
        for _ in range(_MAX_ATTEMPTS):
            item = self._try_new_send(reservation, key, policy)
            if item is None:
                return ReserveResult("reserved")
            usage = usage_from_item(item) if item else WeekUsage(week_key(reservation.local_day))
            held = usage.sends.get(reservation.send_id)
            if held is not None:
                if held.channel == reservation.channel or reservation.channel in held.moved_from:
                    # A retry, or a late redelivery of a channel the send already left: keep the
                    # place where it is (the sender's send state then skips the stale attempt).
                    return ReserveResult("already_reserved")
                moved = self._move(reservation, key, usage, held, policy)
                if moved is not None:
                    return moved
                continue  # the send changed under us: look again
            cap = first_refusing_cap(
                policy,
                UserCapState(reservation.user_id, {usage.week: usage}),
                channel=reservation.channel,
                topic=reservation.topic,
                campaign_id=reservation.campaign_id,
                local_day=reservation.local_day,
                sent_at=reservation.sent_at,
                resend_after=reservation.resend_after,
            )
            if cap is not None:
                return ReserveResult("refused", cap)
            zero = next((c for c in caps if c.max <= 0), None)
            if zero is not None:  # a "max: 0" cap refuses even an empty week
                return ReserveResult("refused", zero.name)
        raise CapStoreError(
            f"cap table {self.table_name}: reservation of send {reservation.send_id} kept conflicting "
            f"after {_MAX_ATTEMPTS} attempts"
        )

    def _try_new_send(self, reservation: Reservation, key: dict[str, Any], policy: Policy) -> dict[str, Any] | None:
        """One conditional UpdateItem; ``None`` when it counted, else the item as it was (maybe ``{}``)."""
        caps = applicable_caps(
            policy, channel=reservation.channel, topic=reservation.topic, campaign_id=reservation.campaign_id
        )
        if any(cap.max <= 0 for cap in caps):
            return self._get(key)  # nothing can fit: no write, just tell retry / move / refusal apart
        weekday = reservation.local_day.isoweekday()
        sent_at = epoch_seconds(reservation.sent_at)
        entry = SendEntry(
            reservation.send_id, reservation.channel, weekday, reservation.campaign_id, reservation.topic, sent_at
        )
        expr = _Expression()
        one = expr.number(1)
        adds = [f"{expr.name(counter)} {one}" for counter in entry.counters()]
        send_attr = expr.name(_SEND_PREFIX + reservation.send_id)
        last_attr = expr.name(_LAST_PREFIX + reservation.campaign_id)
        sets = [
            f"{send_attr} = {expr.string(entry.encode())}",
            f"{last_attr} = {expr.number(sent_at)}",
            f"{expr.name('expires_at')} = {expr.number(self._expires_at(reservation.local_day))}",
        ]
        conditions = [f"attribute_not_exists({send_attr})"]
        conditions += [expr.below(cap_counter(cap, weekday), cap.max) for cap in caps]
        if reservation.resend_after is not None:
            threshold = sent_at - int(reservation.resend_after.total_seconds())
            conditions.append(f"(attribute_not_exists({last_attr}) OR {last_attr} <= {expr.number(threshold)})")
        update = f"ADD {', '.join(adds)} SET {', '.join(sets)}"
        return self._conditional_update(key, expr.request(update, " AND ".join(conditions)))

    def _move(
        self, reservation: Reservation, key: dict[str, Any], usage: WeekUsage, held: SendEntry, policy: Policy
    ) -> ReserveResult | None:
        """Move a held send to ``reservation.channel`` (waterfall fallback); ``None`` if it changed."""
        new_channel = reservation.channel
        cap = first_refusing_move_cap(policy, usage, held, new_channel)
        if cap is not None:
            return ReserveResult("refused", cap)
        moved = held.moved_to(new_channel)
        expr = _Expression()
        adds = [f"{expr.name(c)} {expr.number(-1)}" for c in channel_counter_names(held.channel, held.weekday)]
        adds += [f"{expr.name(c)} {expr.number(1)}" for c in channel_counter_names(new_channel, held.weekday)]
        send_attr = expr.name(_SEND_PREFIX + held.send_id)
        update = f"ADD {', '.join(adds)} SET {send_attr} = {expr.string(moved.encode())}"
        conditions = [f"{send_attr} = {expr.string(held.encode())}"]
        conditions += [expr.below(cap_counter(c, held.weekday), c.max) for c in move_caps(policy, new_channel)]
        item = self._conditional_update(key, expr.request(update, " AND ".join(conditions)))
        if item is None:
            return ReserveResult("reserved")
        after = usage_from_item(item) if item else WeekUsage(usage.week)
        if after.sends.get(held.send_id) != held:
            return None
        cap = first_refusing_move_cap(policy, after, held, new_channel)
        return ReserveResult("refused", cap) if cap is not None else None

    # ---------------------------------------------------------------- release
    def release(self, reservation: Reservation) -> None:
        """Give back the place ``reservation.send_id`` holds (whatever channel it was moved to).

        Idempotent: a send id holding no place is a no-op. Looks in the reservation's week and the
        week before (a retry may cross Sunday midnight). Rare (final failures only), so it reads first.
        """
        _check_send_id(reservation.send_id)
        week = week_key(reservation.local_day)
        for _ in range(_MAX_ATTEMPTS):
            pending = [
                (item, usage)
                for item in self._query_weeks(reservation.user_id, previous_week_key(week), week)
                if reservation.send_id in (usage := usage_from_item(item)).sends
            ]
            if not pending:
                return
            if all(self._release_in(reservation, item, usage) for item, usage in pending):
                return
        raise CapStoreError(
            f"cap table {self.table_name}: release of send {reservation.send_id} kept conflicting "
            f"after {_MAX_ATTEMPTS} attempts"
        )

    def _release_in(self, reservation: Reservation, item: Mapping[str, Any], usage: WeekUsage) -> bool:
        entry = usage.sends[reservation.send_id]
        after = usage.without_send(entry.send_id)
        expr = _Expression()
        adds = [f"{expr.name(counter)} {expr.number(-1)}" for counter in entry.counters()]
        send_attr = expr.name(_SEND_PREFIX + entry.send_id)
        removes = [send_attr]
        sets: list[str] = []
        conditions = [f"{send_attr} = {expr.string(entry.encode())}"]
        before_last = usage.last_sent.get(entry.campaign_id)
        after_last = after.last_sent.get(entry.campaign_id)
        if before_last != after_last:
            last_attr = expr.name(_LAST_PREFIX + entry.campaign_id)
            if before_last is None:
                conditions.append(f"attribute_not_exists({last_attr})")
            else:
                conditions.append(f"{last_attr} = {expr.number(before_last)}")
            if after_last is None:
                removes.append(last_attr)
            else:
                sets.append(f"{last_attr} = {expr.number(after_last)}")
        update = f"ADD {', '.join(adds)} REMOVE {', '.join(removes)}"
        if sets:
            update += f" SET {', '.join(sets)}"
        key = {"pk": item["pk"], "sk": item["sk"]}
        return self._conditional_update(key, expr.request(update, " AND ".join(conditions))) is None

    # ---------------------------------------------------------------- reads
    def usage_snapshot(
        self, *, since: date | None = None, segments: int = 1, consistent: bool = False
    ) -> dict[int | str, UserCapState]:
        """Every user's usage from one (parallel) Scan: no per-user reads (the planner's arbitration).

        Parameters
        ----------
        since
            Keep only weeks that end on or after this local day (cover the longest ``resend_after``).
        segments
            Parallel Scan segments run in threads (``TotalSegments``); 1 is a plain Scan.
        consistent
            Strongly consistent Scan (twice the read cost). Off by default: the planner's view
            only ranks campaigns, the senders' conditional writes are the guarantee.
        """
        if segments < 1:
            raise CapStoreError(f"usage_snapshot segments must be >= 1, got {segments}")
        first_week = week_sk(week_key(since)) if since is not None else None
        if segments == 1:
            parts = [list(self._scan_segment(None, first_week, consistent))]
        else:
            with ThreadPoolExecutor(max_workers=segments) as pool:
                parts = list(
                    pool.map(lambda s: list(self._scan_segment((s, segments), first_week, consistent)), range(segments))
                )
        weeks: dict[int | str, dict[str, WeekUsage]] = {}
        for part in parts:
            for item in part:
                pk = item["pk"]["S"]
                if not pk.startswith(_USER_PREFIX) or not item["sk"]["S"].startswith(_WEEK_PREFIX):
                    continue
                usage = usage_from_item(item)
                weeks.setdefault(user_from_pk(pk), {})[usage.week] = usage
        return {user: UserCapState(user, held) for user, held in weeks.items()}

    def usage_of(
        self, wanted: Mapping[int | str, Collection[str]], *, threads: int = 1
    ) -> dict[int | str, UserCapState]:
        """The stored weeks each user needs: what the planner reads for one slot.

        BatchGetItem of the (user, week) keys (100 per request, unprocessed keys retried with
        backoff), so the read follows the audience, not the table. Above ``batch_key_limit`` keys
        one (parallel) Scan is cheaper per key and is used instead. Users without any stored week
        are absent from the answer.

        Parameters
        ----------
        wanted
            Per user, ISO week keys (``2026-W49``): the weeks of the planned local days, and back
            over the ``resend_after`` of the campaigns planning that user.
        threads
            Requests in flight at once (BatchGetItem batches, or Scan segments).
        """
        if threads < 1:
            raise CapStoreError(f"usage_of threads must be >= 1, got {threads}")
        keys = sorted({(user_pk(user), week_sk(week)) for user, weeks in wanted.items() for week in weeks})
        if not keys:
            return {}
        if len(keys) > self.batch_key_limit:
            since = week_monday(min(sk for _, sk in keys)[len(_WEEK_PREFIX) :])
            wanted_keys = set(keys)
            return {
                user: UserCapState(
                    user, {w: u for w, u in state.weeks.items() if (user_pk(user), week_sk(w)) in wanted_keys}
                )
                for user, state in self.usage_snapshot(since=since, segments=threads).items()
                if user in wanted
            }
        requests = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys]
        batches = [requests[start : start + _BATCH_GET_KEYS] for start in range(0, len(requests), _BATCH_GET_KEYS)]
        if threads == 1:
            parts = [self._batch_get(batch) for batch in batches]
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                parts = list(pool.map(self._batch_get, batches))
        weeks_by_user: dict[int | str, dict[str, WeekUsage]] = {}
        for part in parts:
            for item in part:
                usage = usage_from_item(item)
                weeks_by_user.setdefault(user_from_pk(item["pk"]["S"]), {})[usage.week] = usage
        return {user: UserCapState(user, held) for user, held in weeks_by_user.items()}

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table_name: {"Keys": keys}}
        for attempt in range(_MAX_BATCH_ATTEMPTS):
            page = self._call("batch_get_item", {"RequestItems": request})
            items.extend(page.get("Responses", {}).get(self.table_name, []))
            unprocessed = page.get("UnprocessedKeys") or {}
            if not unprocessed.get(self.table_name, {}).get("Keys"):
                return items
            request = unprocessed
            # Unprocessed keys mean throttling: back off before asking again (AWS's advice).
            sleep(min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt))
        raise CapStoreError(
            f"cap table {self.table_name}: BatchGetItem left keys unprocessed after {_MAX_BATCH_ATTEMPTS} attempts"
        )

    def user_state(self, user_id: int | str, *, since: date | None = None) -> UserCapState:
        """One user's usage (one Query): for checks and tools, not for the planner's bulk path."""
        low = week_sk(week_key(since)) if since is not None else _WEEK_PREFIX
        items = self._query(user_pk(user_id), low, _WEEK_PREFIX + "\uffff")
        return UserCapState(user_id, {u.week: u for u in map(usage_from_item, items)})

    def _scan_segment(
        self, segment: tuple[int, int] | None, first_week: str | None, consistent: bool
    ) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": consistent}
        if segment is not None:
            request["Segment"], request["TotalSegments"] = segment
        if first_week is not None:
            request["FilterExpression"] = "sk >= :first"
            request["ExpressionAttributeValues"] = {":first": {"S": first_week}}
        while True:
            page = self._call("scan", request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _query_weeks(self, user_id: int | str, first: str, last: str) -> list[dict[str, Any]]:
        return self._query(user_pk(user_id), week_sk(first), week_sk(last))

    def _query(self, pk: str, low: str, high: str) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":low": {"S": low}, ":high": {"S": high}},
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("query", request)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ---------------------------------------------------------------- plumbing
    def _key(self, user_id: int | str, week: str) -> dict[str, Any]:
        return {"pk": {"S": user_pk(user_id)}, "sk": {"S": week_sk(week)}}

    def _expires_at(self, local_day: date) -> int:
        week_end = week_monday(week_key(local_day)) + timedelta(days=7)
        return epoch_seconds(datetime.combine(week_end, time(), tzinfo=UTC) + self.retention)

    def _get(self, key: dict[str, Any]) -> dict[str, Any]:
        response = self._call("get_item", {"TableName": self.table_name, "Key": key, "ConsistentRead": True})
        item: dict[str, Any] = response.get("Item", {})
        return item

    def _conditional_update(self, key: dict[str, Any], request: dict[str, Any]) -> dict[str, Any] | None:
        """``None`` when the write happened; the item as it was (``{}`` if absent) when the condition failed."""
        try:
            self.client.update_item(
                TableName=self.table_name, Key=key, ReturnValuesOnConditionCheckFailure="ALL_OLD", **request
            )
        except Exception as exc:
            if error_code(exc) != _CONDITION_FAILED:
                raise self._error("update_item", exc) from exc
            item = getattr(exc, "response", {}).get("Item")
            return item if item is not None else self._get(key)
        return None

    def _call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**request)
        except Exception as exc:
            raise self._error(operation, exc) from exc
        return response

    def _error(self, operation: str, exc: Exception) -> CapStoreError:
        code = error_code(exc) or type(exc).__name__
        return CapStoreError(f"cap table {self.table_name}: {operation} failed ({code}): {exc}")


def _check_send_id(send_id: str) -> None:
    # The send id becomes part of an attribute name: refuse anything that is not a plain token.
    if not _SEND_ID.match(send_id):
        raise CapStoreError(f"send_id {send_id!r} must be 1-128 letters, digits or _.:-")
