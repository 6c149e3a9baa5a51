"""Compile a rule set into what the engine evaluates and what the loader must read.

Segments are ordered so that a segment is evaluated after every segment it references; campaign
audiences and excludes become pseudo-segments ``@audience:<id>`` / ``@exclude:<id>`` so that the
planner only ever reads membership.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from funnelcast.errors import RuleError
from funnelcast.rules.models import (
    AnyNode,
    AttributeNode,
    EventNode,
    Node,
    RfmNode,
    RuleSet,
    SegmentRefNode,
    walk,
)


@dataclass(frozen=True)
class DataNeeds:
    """What the loader must read for one run (see the H3/H4 data contract)."""

    event_types: frozenset[str] | None
    event_columns: frozenset[str]
    customer_columns: frozenset[str] | None
    earliest: datetime | None
    until: datetime


@dataclass(frozen=True)
class PlannedSegment:
    """One segment (or campaign pseudo-segment) to evaluate, in dependency order."""

    segment_id: str
    where: Node


def audience_id(campaign_id: str) -> str:
    return f"@audience:{campaign_id}"


def exclude_id(campaign_id: str) -> str:
    return f"@exclude:{campaign_id}"


def _references(node: Node) -> set[str]:
    return {child.segment for child in walk(node) if isinstance(child, SegmentRefNode)}


def evaluation_order(ruleset: RuleSet) -> list[PlannedSegment]:
    """Segments in dependency order followed by the campaign pseudo-segments.

    Raises
    ------
    RuleError
        When a segment references an unknown segment or the references form a cycle.
    """
    by_id = {segment.id: segment for segment in ruleset.segments}
    ordered: list[PlannedSegment] = []
    state: dict[str, str] = {}

    def visit(segment_id: str, path: list[str]) -> None:
        if state.get(segment_id) == "done":
            return
        if state.get(segment_id) == "active":
            cycle = " -> ".join([*path[path.index(segment_id) :], segment_id])
            raise RuleError([f"segment reference cycle: {cycle}"])
        if segment_id not in by_id:
            raise RuleError([f"segment {path[-1]!r} references unknown segment {segment_id!r}"])
        state[segment_id] = "active"
        for ref in sorted(_references(by_id[segment_id].where)):
            visit(ref, [*path, segment_id])
        state[segment_id] = "done"
        ordered.append(PlannedSegment(segment_id, by_id[segment_id].where))

    for segment in ruleset.segments:
        visit(segment.id, [segment.id])
    for campaign in ruleset.campaigns:
        for ref in sorted(_references(campaign.audience)):
            if ref not in by_id:
                raise RuleError([f"campaign {campaign.id!r} references unknown segment {ref!r}"])
        ordered.append(PlannedSegment(audience_id(campaign.id), campaign.audience))
        if campaign.exclude:
            ordered.append(PlannedSegment(exclude_id(campaign.id), AnyNode(any=list(campaign.exclude))))
    return ordered


def all_nodes(ruleset: RuleSet) -> list[Node]:
    """Every node of every segment, audience and exclude tree."""
    roots: list[Node] = [segment.where for segment in ruleset.segments]
    for campaign in ruleset.campaigns:
        roots.append(campaign.audience)
        roots.extend(campaign.exclude)
    return [node for root in roots for node in walk(root)]


def data_needs(ruleset: RuleSet, at: datetime) -> DataNeeds:
    """Event types, columns and the time range the rule set needs at reference time ``at``.

    RFM features are always exported, so the RFM event and lookback are always included.
    """
    rfm = ruleset.policy.rfm
    types: set[str] | None = {rfm.event}
    columns: set[str] = {rfm.amount_field}
    windows: list[timedelta] = [rfm.lookback]
    for node in all_nodes(ruleset):
        if isinstance(node, EventNode):
            windows.append(node.within)
            if node.event == "*":
                types = None
            elif types is not None:
                types.add(node.event)
            columns.update(condition.field for condition in node.where)
            for extra in (node.per, node.sum):
                if extra is not None:
                    columns.add(extra)
            if node.share is not None:
                columns.update(condition.field for condition in node.share.where)
            if node.top_share is not None:
                columns.add(node.top_share.field)
            if node.not_followed_by is not None and types is not None:
                types.add(node.not_followed_by.event)
        elif isinstance(node, (AttributeNode, RfmNode)):
            pass
    columns -= {"user_id", "ts", "event_type"}
    return DataNeeds(
        event_types=frozenset(types) if types is not None else None,
        event_columns=frozenset(columns),
        customer_columns=None,
        earliest=at - max(windows),
        until=at,
    )
