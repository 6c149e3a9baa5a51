"""Rules activation: validate the whole candidate set under ``incoming/`` and make it active.

Nothing a marketer uploads can break what is running: an invalid candidate set only writes a
report under ``reports/`` and leaves ``active.json`` untouched. A valid one is written as an
immutable bundle ``rulesets/<hash>/bundle.json`` first and ``active.json`` moves last.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from funnelcast.errors import ObjectNotFoundError, RuleError
from funnelcast.rules.models import RuleSet
from funnelcast.rules.ruleset import RULE_SUFFIXES, load_ruleset_from_bytes
from funnelcast.storage import ObjectStore

INCOMING_PREFIX = "incoming/"
ACTIVE_KEY = "active.json"
REPORTS_PREFIX = "reports/"


def bundle_key(rules_hash: str) -> str:
    return f"rulesets/{rules_hash}/bundle.json"


def report_key(upload_key: str) -> str:
    return f"{REPORTS_PREFIX}{upload_key}.json"


@dataclass(frozen=True)
class ActivationResult:
    """What an activation did: ``activated`` with the new hash, or ``rejected`` with every problem."""

    activated: bool
    upload_key: str
    rules_hash: str | None = None
    bundle_key: str | None = None
    segments: int = 0
    campaigns: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "activated": self.activated,
            "upload_key": self.upload_key,
            "rules_hash": self.rules_hash,
            "bundle_key": self.bundle_key,
            "segments": self.segments,
            "campaigns": self.campaigns,
            "files": self.files,
            "problems": self.problems,
            "warnings": self.warnings,
            "report_key": self.report_key,
        }


def activate_rules(
    store: ObjectStore,
    upload_key: str,
    *,
    now: datetime,
    on_activated: Sequence[Callable[[RuleSet], None]] = (),
) -> ActivationResult:
    """Validate every object under ``incoming/`` as one rule set and activate it when valid.

    Parameters
    ----------
    store
        The rules bucket (or a local directory with the same layout).
    upload_key
        The key that triggered this run (names the report of a rejected set).
    now
        Activation time recorded in ``active.json`` (the demo passes its simulated clock).
    on_activated
        Called with the new rule set after ``active.json`` moved (e.g. schedule syncing).
    """
    keys = [key for key in store.list_keys(INCOMING_PREFIX) if key.endswith(RULE_SUFFIXES)]
    try:
        if not upload_key.endswith(RULE_SUFFIXES):
            # Never ignore an upload silently: tell the marketer why it does not count.
            raise RuleError([f"{upload_key}:1:1: not a rule file: rule files end in .yaml or .yml"])
        report = load_ruleset_from_bytes((key, store.get_bytes(key)) for key in keys)
    except RuleError as exc:
        body = {
            "upload_key": upload_key,
            "checked_at": now.isoformat(),
            "files": keys,
            "problems": exc.problems,
            "active_unchanged": True,
        }
        store.put_bytes(report_key(upload_key), json.dumps(body, ensure_ascii=False, indent=2).encode())
        return ActivationResult(
            activated=False,
            upload_key=upload_key,
            files=keys,
            problems=list(exc.problems),
            report_key=report_key(upload_key),
        )
    ruleset = report.ruleset
    rules_hash = ruleset.rules_hash
    key = bundle_key(rules_hash)
    if not store.exists(key):
        store.put_bytes(key, ruleset.canonical_json())
    pointer = {"rules_hash": rules_hash, "bundle_key": key, "activated_at": now.isoformat(), "files": keys}
    store.put_bytes(ACTIVE_KEY, json.dumps(pointer, ensure_ascii=False, sort_keys=True).encode())
    for callback in on_activated:
        callback(ruleset)
    return ActivationResult(
        activated=True,
        upload_key=upload_key,
        rules_hash=rules_hash,
        bundle_key=key,
        segments=len(ruleset.segments),
        campaigns=sorted(c.id for c in ruleset.campaigns),
        files=keys,
        warnings=report.warnings,
    )


_BUNDLES: dict[str, RuleSet] = {}


def load_ruleset_bundle(store: ObjectStore, rules_hash: str) -> RuleSet:
    """The rule set of ``rules_hash`` (bundles are immutable, so cached per process)."""
    cached = _BUNDLES.get(rules_hash)
    if cached is not None:
        return cached
    ruleset = RuleSet.from_bundle(store.get_bytes(bundle_key(rules_hash)))
    if ruleset.rules_hash != rules_hash:
        raise RuleError([f"{store.uri(bundle_key(rules_hash))}:1:1: bundle content does not match its hash"])
    _BUNDLES[rules_hash] = ruleset
    return ruleset


def active_rules_hash(store: ObjectStore) -> str:
    """The hash ``active.json`` points at; :class:`RuleError` when nothing was activated yet."""
    try:
        pointer = json.loads(store.get_bytes(ACTIVE_KEY))
    except ObjectNotFoundError:
        raise RuleError(
            [f"{store.uri(ACTIVE_KEY)}:1:1: no rule set is active yet: upload rules under incoming/"]
        ) from None
    return str(pointer["rules_hash"])


def load_active_ruleset(store: ObjectStore) -> RuleSet:
    """The active rule set (one small ``active.json`` read, the bundle from cache when known)."""
    return load_ruleset_bundle(store, active_rules_hash(store))
