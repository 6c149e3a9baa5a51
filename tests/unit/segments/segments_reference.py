"""A deliberately naive per-user evaluator written from SPEC §2.2/§2.3, for property tests only.

Null semantics follow the engine's documented rule: a null value fails every comparison except
``missing``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from funnelcast.rules.durations import parse_duration
from funnelcast.rules.models import (
    AllNode,
    AnyNode,
    AttributeNode,
    Bound,
    EventNode,
    FieldCondition,
    Node,
    NotNode,
    Op,
    RfmNode,
    RuleSet,
    SegmentRefNode,
)

Row = dict[str, Any]


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def compare(value: Any, op: Op, target: Any, at: datetime) -> bool:
    if op is Op.EXISTS:
        return not _null(value)
    if op is Op.MISSING:
        return _null(value)
    if _null(value):
        return False
    if op is Op.WITHIN:
        return at - parse_duration(target) < value <= at
    if op is Op.BEFORE:
        return value <= at - parse_duration(target)
    if op is Op.EQ:
        return bool(value == target)
    if op is Op.NE:
        return bool(value != target)
    if op is Op.IN:
        return value in target
    if op is Op.NOT_IN:
        return value not in target
    if op is Op.GT:
        return bool(value > target)
    if op is Op.GTE:
        return bool(value >= target)
    if op is Op.LT:
        return bool(value < target)
    if op is Op.LTE:
        return bool(value <= target)
    low, high = target
    return bool(low <= value <= high)


def bound_holds(value: Any, bound: Bound) -> bool:
    checks = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return all(checks[name](value, threshold) for name, threshold in bound.comparisons())


def share_holds(numerator: int, denominator: int, bound: Bound) -> bool:
    if denominator == 0:
        return False
    ratio = Fraction(numerator, denominator)
    return bound_holds(ratio, _fraction_bound(bound))


class _FractionBound:
    def __init__(self, bound: Bound) -> None:
        self._pairs = [(name, Fraction(str(value))) for name, value in bound.comparisons()]

    def comparisons(self) -> list[tuple[str, Fraction]]:
        return self._pairs


def _fraction_bound(bound: Bound) -> Any:
    return _FractionBound(bound)


def _matches(event: Row, conditions: list[FieldCondition], at: datetime) -> bool:
    return all(compare(event.get(c.field), c.op, c.value, at) for c in conditions)


class Reference:
    def __init__(self, ruleset: RuleSet, customers: list[Row], events: list[Row], at: datetime) -> None:
        self.ruleset = ruleset
        self.customers = customers
        self.at = at
        self.events: dict[Any, list[Row]] = {c["user_id"]: [] for c in customers}
        for event in events:
            if event["user_id"] in self.events and event["ts"] <= at:
                self.events[event["user_id"]].append(event)
        self.members: dict[str, set[Any]] = {}
        self.rfm = self._rfm()
        self.top: dict[str, dict[Any, Any]] = {}

    def _rfm(self) -> dict[Any, tuple[int, int, int]]:
        policy = self.ruleset.policy.rfm
        values: dict[Any, tuple[Any, int, float]] = {}
        for user, events in self.events.items():
            chosen = [
                e for e in events if e["event_type"] == policy.event and self.at - policy.lookback < e["ts"] <= self.at
            ]
            if chosen:
                amount = sum(0.0 if _null(e.get(policy.amount_field)) else e[policy.amount_field] for e in chosen)
                values[user] = (max(e["ts"] for e in chosen), len(chosen), amount)
        n = len(values)
        scores: dict[Any, tuple[int, int, int]] = {}
        for user, mine in values.items():
            dims = []
            for index in range(3):
                rank = 1 + sum(1 for other in values.values() if other[index] < mine[index])
                dims.append(1 + (5 * (rank - 1)) // n)
            scores[user] = (dims[0], dims[1], dims[2])
        return scores

    def event(self, node: EventNode, user: Any) -> bool:
        window = [
            e
            for e in self.events[user]
            if (node.event == "*" or e["event_type"] == node.event)
            and self.at - node.within < e["ts"] <= self.at
            and _matches(e, node.where, self.at)
        ]
        count = node.effective_count
        if node.per is not None:
            tallies: dict[Any, int] = {}
            for e in window:
                if not _null(e.get(node.per)):
                    tallies[e[node.per]] = tallies.get(e[node.per], 0) + 1
            return any(bound_holds(n, count) for n in tallies.values())
        ok = bound_holds(len(window), count)
        if node.sum is not None and node.value is not None:
            total = sum(0.0 if _null(e.get(node.sum)) else e[node.sum] for e in window)
            ok = ok and bound_holds(total, node.value)
        if node.share is not None:
            inner = sum(1 for e in window if _matches(e, node.share.where, self.at))
            ok = ok and share_holds(inner, len(window), node.share)
        if node.top_share is not None:
            tallies = {}
            for e in window:
                value = e.get(node.top_share.field)
                if not _null(value):
                    tallies[value] = tallies.get(value, 0) + 1
            best = max(tallies.values(), default=0)
            ok = ok and share_holds(best, len(window), node.top_share)
        if node.not_followed_by is not None:
            follow = node.not_followed_by
            early = [e for e in window if e["ts"] <= self.at - follow.after]
            if not early:
                return False
            last = max(e["ts"] for e in early)
            followed = any(e["event_type"] == follow.event and last < e["ts"] <= self.at for e in self.events[user])
            ok = ok and not followed
        return ok

    def holds(self, node: Node, customer: Row) -> bool:
        user = customer["user_id"]
        if isinstance(node, AllNode):
            return all(self.holds(child, customer) for child in node.all)
        if isinstance(node, AnyNode):
            return any(self.holds(child, customer) for child in node.any)
        if isinstance(node, NotNode):
            return not self.holds(node.not_, customer)
        if isinstance(node, AttributeNode):
            return compare(customer.get(node.attribute), node.op, node.value, self.at)
        if isinstance(node, EventNode):
            return self.event(node, user)
        if isinstance(node, RfmNode):
            scores = self.rfm.get(user)
            if scores is None:
                return False
            spec = node.rfm
            if spec.code is not None:
                return "".join(str(s) for s in scores) in spec.code
            return all(
                allowed is None or score in allowed
                for score, allowed in zip(scores, (spec.r, spec.f, spec.m), strict=True)
            )
        if isinstance(node, SegmentRefNode):
            return user in self.members[node.segment]
        raise AssertionError(node)

    def top_value(self, node: EventNode, user: Any) -> Any:
        """The most frequent non-null value of ``top_share.field`` in the node's events (ties: smallest)."""
        assert node.top_share is not None
        tallies: dict[Any, int] = {}
        for e in self.events[user]:
            if (
                (node.event == "*" or e["event_type"] == node.event)
                and self.at - node.within < e["ts"] <= self.at
                and _matches(e, node.where, self.at)
                and not _null(e.get(node.top_share.field))
            ):
                value = e[node.top_share.field]
                tallies[value] = tallies.get(value, 0) + 1
        if not tallies:
            return None
        best = max(tallies.values())
        return min(value for value, n in tallies.items() if n == best)

    def segment(self, segment_id: str, where: Node) -> set[Any]:
        self.members[segment_id] = {c["user_id"] for c in self.customers if self.holds(where, c)}
        return self.members[segment_id]


def window_edge(at: datetime, within: timedelta) -> datetime:
    """The exclusive lower bound of a window (events exactly here are outside)."""
    return at - within
