"""Load a whole rule set (files and directories) and check it across files.

Every problem of every file is collected before anything is raised, so a marketer fixes them in
one pass: ``RuleError.problems`` holds ``file:line:col: message`` lines.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import liquid
from liquid.exceptions import LiquidError

from funnelcast.errors import RuleError
from funnelcast.rules.loader import LoadedFile, Path, load_rule_bytes, load_rule_file
from funnelcast.rules.models import (
    AllNode,
    AnyNode,
    AttributeNode,
    Campaign,
    EventNode,
    Node,
    NotNode,
    Policy,
    RuleSet,
    Schedule,
    Segment,
    SegmentRefNode,
    walk,
)

RULE_SUFFIXES = (".yaml", ".yml")

#: SPEC §1 customer columns every template may name.
CUSTOMER_COLUMNS = frozenset(
    {
        "user_id",
        "signup_at",
        "timezone",
        "email",
        "phone",
        "push_endpoint",
        "kakao_friend",
        "consent_email",
        "consent_sms",
        "consent_push",
        "consent_kakao",
        "consent_night_ads",
        "name",
    }
)
#: Variables the sender provides to every message.
SENDER_VARIABLES = frozenset({"campaign_id", "variant_id", "link", "rfm_r", "rfm_f", "rfm_m", "rfm_code"})

_LIQUID = liquid.Environment()


@dataclass
class RuleSetReport:
    """A checked rule set with the files it came from and non-fatal warnings."""

    ruleset: RuleSet
    files: list[str]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """``12 files OK: 10 segments, 6 campaigns, 1 policy (rules a1b2c3...)``."""
        rs = self.ruleset
        return (
            f"{len(self.files)} files OK: {len(rs.segments)} segments, {len(rs.campaigns)} campaigns, "
            f"1 policy (rules {rs.rules_hash})"
        )


def rule_paths(paths: Sequence[str]) -> list[str]:
    """Expand directories into their ``*.yaml`` / ``*.yml`` files (sorted); files stay as given."""
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(RULE_SUFFIXES))
        else:
            found.append(path)
    return found


def load_ruleset(paths: Sequence[str]) -> RuleSetReport:
    """Load and cross-check rule files and directories; raise :class:`RuleError` with every problem."""
    files = rule_paths(paths)
    if not files:
        raise RuleError([f"{', '.join(paths) or '.'}:1:1: no rule files (*.yaml) found"])
    loaded: list[LoadedFile] = []
    problems: list[str] = []
    for path in files:
        try:
            loaded.append(load_rule_file(path))
        except RuleError as exc:
            problems.extend(exc.problems)
    return check_ruleset(loaded, files, problems)


def load_ruleset_from_bytes(bodies: Iterable[tuple[str, bytes]]) -> RuleSetReport:
    """Same as :func:`load_ruleset` for ``(name, body)`` pairs (objects in a bucket)."""
    loaded: list[LoadedFile] = []
    problems: list[str] = []
    names: list[str] = []
    for name, body in bodies:
        names.append(name)
        try:
            loaded.append(load_rule_bytes(body, name))
        except RuleError as exc:
            problems.extend(exc.problems)
    if not names:
        raise RuleError(["incoming/:1:1: no rule files (*.yaml) found"])
    return check_ruleset(loaded, names, problems)


def _where(file: LoadedFile, path: Path, *, key: bool = False) -> str:
    line, column = file.source.position(path, key=key)
    return f"{file.name}:{line}:{column}"


def _node_paths(node: Node, path: Path) -> Iterable[tuple[Node, Path]]:
    """Every node with its path in the YAML document, parents first."""
    yield node, path
    if isinstance(node, AllNode):
        for index, child in enumerate(node.all):
            yield from _node_paths(child, (*path, "all", index))
    elif isinstance(node, AnyNode):
        for index, child in enumerate(node.any):
            yield from _node_paths(child, (*path, "any", index))
    elif isinstance(node, NotNode):
        yield from _node_paths(node.not_, (*path, "not"))


def _campaign_trees(campaign: Campaign) -> Iterable[tuple[Node, Path]]:
    yield from _node_paths(campaign.audience, ("audience",))
    for index, node in enumerate(campaign.exclude):
        yield from _node_paths(node, ("exclude", index))


def check_ruleset(loaded: list[LoadedFile], files: list[str], problems: list[str]) -> RuleSetReport:
    """Cross-file checks (ids, references, cycles, templates); raise :class:`RuleError` on any problem."""
    problems = list(problems)
    warnings: list[str] = []
    segments: dict[str, LoadedFile] = {}
    campaigns: dict[str, LoadedFile] = {}
    policies: list[LoadedFile] = []
    for file in loaded:
        rule = file.rule
        if isinstance(rule, Policy):
            policies.append(file)
            continue
        table = segments if isinstance(rule, Segment) else campaigns
        if rule.id in table:
            problems.append(
                f"{_where(file, ('id',))}: duplicate {rule.kind} id {rule.id!r} (also in {table[rule.id].name})"
            )
        else:
            table[rule.id] = file
    if not policies and loaded:
        problems.append(f"{files[0]}:1:1: the rule set has no policy file (kind: policy); exactly one is needed")
    for extra in policies[1:]:
        problems.append(f"{extra.name}:1:1: a second policy (the first is {policies[0].name}); exactly one is allowed")

    # Segment references and cycles.
    references: dict[str, list[str]] = {}
    for segment_id, file in segments.items():
        assert isinstance(file.rule, Segment)
        references[segment_id] = []
        for node, path in _node_paths(file.rule.where, ("where",)):
            if isinstance(node, SegmentRefNode):
                references[segment_id].append(node.segment)
                if node.segment not in segments:
                    problems.append(f"{_where(file, (*path, 'segment'))}: unknown segment {node.segment!r}")
    for _campaign_id, file in campaigns.items():
        assert isinstance(file.rule, Campaign)
        for node, path in _campaign_trees(file.rule):
            if isinstance(node, SegmentRefNode) and node.segment not in segments:
                problems.append(f"{_where(file, (*path, 'segment'))}: unknown segment {node.segment!r}")
    for cycle in _cycles(references):
        file = segments[cycle[0]]
        problems.append(f"{_where(file, ('where',))}: segments refer to each other in a cycle: {' -> '.join(cycle)}")

    policy = policies[0].rule if policies else None
    assert policy is None or isinstance(policy, Policy)
    attributes = _referenced_attributes(segments, campaigns) | set(policy.attributes if policy else [])
    for file in campaigns.values():
        problems.extend(_check_templates(file, segments, attributes))

    if policy is not None:
        topics = {c.rule.topic for c in campaigns.values() if isinstance(c.rule, Campaign)}
        for index, cap in enumerate(policy.caps):
            where = _where(policies[0], ("caps", index))
            if cap.campaign is not None and cap.campaign not in campaigns:
                problems.append(f"{where}: cap refers to unknown campaign {cap.campaign!r}")
            if cap.topic is not None and cap.topic not in topics:
                warnings.append(f"{where}: warning: cap topic {cap.topic!r} is used by no campaign")

    if problems:
        raise RuleError(problems)
    assert isinstance(policy, Policy)
    default_schedule_tz = policy.default_timezone
    final_campaigns: list[Campaign] = []
    for file in campaigns.values():
        assert isinstance(file.rule, Campaign)
        campaign = file.rule
        if campaign.schedule.timezone is None:
            schedule = Schedule.model_validate(
                {**campaign.schedule.model_dump(exclude_none=True), "timezone": default_schedule_tz}
            )
            campaign = campaign.model_copy(update={"schedule": schedule})
        final_campaigns.append(campaign)
    ruleset = RuleSet(
        segments=[f.rule for f in segments.values() if isinstance(f.rule, Segment)],
        campaigns=final_campaigns,
        policy=policy,
    )
    return RuleSetReport(ruleset=ruleset, files=list(files), warnings=warnings)


def _cycles(references: dict[str, list[str]]) -> list[list[str]]:
    """Each distinct cycle once, as ``[a, b, a]``, found by depth-first search."""
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = [*stack[stack.index(node) :], node]
            key = frozenset(cycle)
            if key not in seen_cycles:
                seen_cycles.add(key)
                cycles.append(cycle)
            return
        if node in done or node not in references:
            return
        stack.append(node)
        for target in references[node]:
            visit(target, stack)
        stack.pop()
        done.add(node)

    for start in sorted(references):
        visit(start, [])
    return cycles


def _referenced_attributes(segments: dict[str, LoadedFile], campaigns: dict[str, LoadedFile]) -> set[str]:
    names: set[str] = set()
    trees: list[Node] = []
    for file in segments.values():
        if isinstance(file.rule, Segment):
            trees.append(file.rule.where)
    for file in campaigns.values():
        if isinstance(file.rule, Campaign):
            trees.append(file.rule.audience)
            trees.extend(file.rule.exclude)
    for tree in trees:
        for node in walk(tree):
            if isinstance(node, AttributeNode):
                names.add(node.attribute)
    return names


def _top_exports(node: Node, segments: dict[str, LoadedFile], seen: set[str]) -> set[str]:
    """``top_<field>`` variables exported by the segments an audience refers to (transitively)."""
    exports: set[str] = set()
    for child in walk(node):
        if isinstance(child, EventNode) and child.top_share is not None:
            exports.add(f"top_{child.top_share.field}")
        if isinstance(child, SegmentRefNode) and child.segment in segments and child.segment not in seen:
            seen.add(child.segment)
            rule = segments[child.segment].rule
            if isinstance(rule, Segment):
                exports |= _top_exports(rule.where, segments, seen)
    return exports


def _check_templates(file: LoadedFile, segments: dict[str, LoadedFile], attributes: set[str]) -> list[str]:
    campaign = file.rule
    assert isinstance(campaign, Campaign)
    allowed = CUSTOMER_COLUMNS | SENDER_VARIABLES | attributes | _top_exports(campaign.audience, segments, set())
    problems: list[str] = []
    for v_index, variant in enumerate(campaign.variants):
        for channel, message in variant.messages.items():
            for key in ("template", "subject", "title"):
                text = getattr(message, key)
                if text is None:
                    continue
                where = _where(file, ("variants", v_index, "messages", channel.value, key))
                try:
                    template = _LIQUID.parse(text)
                except LiquidError as exc:
                    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    problems.append(f"{where}: Liquid template error in {key}: {first_line}")
                    continue
                for name in template.global_variables():
                    if name not in allowed:
                        problems.append(
                            f"{where}: template variable {name!r} is no customer column, export or "
                            "campaign variable (declare extra customer columns in policy 'attributes')"
                        )
    return problems
