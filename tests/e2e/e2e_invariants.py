"""The SPEC's invariants, checked on a demo run's output files for every user and day.

Each check returns a list of violations (human-readable, the first few shown by the tests): an
empty list means the invariant holds. The outbox (what the fake providers accepted, i.e. what the
customers received) is the ground truth for "received"; decisions and deliveries are what the
pipeline says it did.
"""

from __future__ import annotations

import fcntl
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import pytest

from funnelcast.rules.models import Campaign, RuleSet
from funnelcast.rules.ruleset import load_ruleset

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSENT_COLUMN = {
    "email": "consent_email",
    "sms": "consent_sms",
    "push": "consent_push",
    "kakao_alimtalk": "consent_kakao",
    "kakao_brand": "consent_kakao",
}
FINAL_SEND_OUTCOMES = {"sent", "failed", "unknown", "capped", "skipped"}
SKIP_OUTCOMES = {"excluded", "holdout", "no_channel", "suppressed", "capped", "resend_after", "lower_priority"}
# How long after its timestamp an unsubscribe may take to reach the feedback function in the demo:
# reactions are handed over at the next clock step, at most one tick later.
FEEDBACK_LAG = timedelta(minutes=15)


@dataclass
class DemoOutputs:
    out: Path
    summary: dict[str, Any]
    ruleset: RuleSet
    customers: pd.DataFrame
    outbox: pd.DataFrame
    deliveries: pd.DataFrame
    decisions: pd.DataFrame
    feedback: pd.DataFrame
    dead_letters: list[dict[str, Any]]


def load_outputs(out: Path) -> DemoOutputs:
    rules = sorted(
        p
        for p in (REPO_ROOT / "segment_rules").rglob("*.y*ml")
        if "fixtures" not in p.parts and "schema" not in p.parts
    )
    return DemoOutputs(
        out=out,
        summary=json.loads((out / "summary.json").read_text(encoding="utf-8")),
        ruleset=load_ruleset([str(p) for p in rules]).ruleset,
        customers=pd.read_parquet(out / "customers.parquet"),
        outbox=pd.read_parquet(out / "outbox.parquet"),
        deliveries=pd.read_parquet(out / "deliveries.parquet"),
        decisions=pd.read_parquet(out / "decisions.parquet"),
        feedback=pd.read_parquet(out / "feedback.parquet"),
        dead_letters=json.loads((out / "dlq.json").read_text(encoding="utf-8")),
    )


@contextmanager
def shared_once(request: pytest.FixtureRequest, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder shared by every pytest-xdist worker of this session, and whether it still needs filling.

    The first worker to take the lock runs the demo; the others wait and read its files (the
    documented xdist pattern for session fixtures that must run once).
    """
    factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    base = factory.getbasetemp()
    root = base.parent if hasattr(request.config, "workerinput") else base
    out = root / name
    with open(root / f"{name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield out, not (out / "summary.json").is_file()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------- helpers


def _zone_of(ruleset: RuleSet) -> Callable[[object], ZoneInfo]:
    default = ZoneInfo(ruleset.policy.default_timezone)
    cache: dict[object, ZoneInfo] = {}

    def zone(name: object) -> ZoneInfo:
        if name not in cache:
            try:
                cache[name] = ZoneInfo(str(name)) if isinstance(name, str) and name else default
            except (ZoneInfoNotFoundError, ValueError):
                cache[name] = default  # missing or invalid: the policy's default, as the planner does
        return cache[name]

    return zone


def received(outputs: DemoOutputs) -> pd.DataFrame:
    """The outbox with each user's local time, campaign topic, consents; one row per received message."""
    frame = outputs.outbox.copy()
    frame["user_key"] = frame["user_id"].astype(str)
    customers = outputs.customers.copy()
    customers["user_key"] = customers["user_id"].astype(str)
    columns = ["user_key", "timezone", "consent_night_ads", *sorted(set(CONSENT_COLUMN.values()))]
    frame = frame.merge(customers[[c for c in columns if c in customers]], on="user_key", how="left")
    zone = _zone_of(outputs.ruleset)
    frame["local"] = [ts.astimezone(zone(tz)) for ts, tz in zip(frame["sent_at"], frame["timezone"], strict=True)]
    topics = {c.id: c.topic for c in outputs.ruleset.campaigns}
    frame["topic"] = frame["campaign_id"].map(topics)
    return frame


def _flag(value: object) -> bool:
    return bool(value) if value is not None and not pd.isna(value) else False


def _campaign(outputs: DemoOutputs, campaign_id: str) -> Campaign:
    return outputs.ruleset.campaign(campaign_id)


# ---------------------------------------------------------------------------- invariants


def cap_violations(outputs: DemoOutputs) -> list[str]:
    """No user over any policy cap in their local calendar day / ISO week (overall, per channel, per topic)."""
    frame = received(outputs)
    if frame.empty:
        return []
    frame["day"] = [local.date() for local in frame["local"]]
    frame["week"] = [tuple(local.isocalendar())[:2] for local in frame["local"]]
    problems = []
    for cap in outputs.ruleset.policy.caps:
        subset = frame
        if cap.channel is not None:
            subset = subset[subset["channel"] == cap.channel.value]
        if cap.topic is not None:
            subset = subset[subset["topic"] == cap.topic]
        if cap.campaign is not None:
            subset = subset[subset["campaign_id"] == cap.campaign]
        period = "day" if cap.per.value == "day" else "week"
        counts = subset.groupby(["user_key", period]).size()
        for (user, when), count in counts[counts > cap.max].items():
            problems.append(f"user {user} got {count} messages in {period} {when}, over cap {cap.model_dump()}")
    return problems


def duplicate_violations(outputs: DemoOutputs) -> list[str]:
    """No send_id received twice, and no run reaches a user twice."""
    outbox = outputs.outbox
    twice = outbox[outbox.duplicated("send_id", keep=False)]
    problems = [f"send_id {s} received {n} times" for s, n in twice.groupby("send_id").size().items()]
    sent = outputs.deliveries[outputs.deliveries["status"] == "sent"]
    again = sent[sent.duplicated(["run_id", "user_id"], keep=False)]
    problems += [f"run {r} delivered twice to user {u}" for (r, u), _ in again.groupby(["run_id", "user_id"])]
    return problems


def resend_after_violations(outputs: DemoOutputs) -> list[str]:
    frame = received(outputs).sort_values("sent_at")
    problems = []
    for (campaign_id, user), group in frame.groupby(["campaign_id", "user_key"]):
        gap = _campaign(outputs, str(campaign_id)).resend_after
        if gap is None or len(group) < 2:
            continue
        times = list(group["sent_at"])
        for earlier, later in itertools.pairwise(times):
            if later - earlier < gap:
                problems.append(f"user {user} got {campaign_id} at {earlier} and again at {later} (resend_after {gap})")
    return problems


def holdout_violations(outputs: DemoOutputs) -> list[str]:
    """Holdout users never receive the campaign."""
    decisions = outputs.decisions
    held = decisions[decisions["planned_outcome"] == "holdout"]
    pairs = set(zip(held["campaign_id"], held["user_id"].astype(str), strict=True))
    outbox = outputs.outbox
    hits = outbox[[(c, str(u)) in pairs for c, u in zip(outbox["campaign_id"], outbox["user_id"], strict=True)]]
    return [f"holdout user {u} of {c} received {s}" for c, u, s in hits[["campaign_id", "user_id", "send_id"]].values]


def consent_violations(outputs: DemoOutputs) -> list[str]:
    """Advertising only with the channel's consent; AlimTalk never carries advertising."""
    frame = received(outputs)
    problems = []
    for row in frame.itertuples():
        if row.channel == "kakao_alimtalk" and row.purpose == "advertising":
            problems.append(f"AlimTalk carried advertising {row.send_id} ({row.campaign_id})")
        column = CONSENT_COLUMN.get(str(row.channel))
        if row.purpose == "advertising" and column is not None and not _flag(getattr(row, column)):
            problems.append(f"advertising {row.send_id} on {row.channel} to user {row.user_key} without {column}")
    return problems


def window_violations(outputs: DemoOutputs) -> list[str]:
    """No advertising in the night ban without consent_night_ads; nothing outside a send window."""
    frame = received(outputs)
    night_ban = outputs.ruleset.policy.compliance.night_ban
    problems = []
    for row in frame.itertuples():
        local_time = row.local.time()
        campaign = _campaign(outputs, str(row.campaign_id))
        if campaign.send_window is not None and not campaign.send_window.contains(local_time):
            problems.append(f"{row.send_id} ({row.campaign_id}) at local {row.local} outside {campaign.send_window}")
        if (
            row.purpose == "advertising"
            and night_ban is not None
            and not _flag(row.consent_night_ads)
            and night_ban.contains(local_time)
        ):
            problems.append(f"advertising {row.send_id} at local {row.local} in the night ban (no night consent)")
    return problems


def outcome_violations(outputs: DemoOutputs, *, ended_at: pd.Timestamp) -> list[str]:
    """Exactly one outcome per audience member per run, and every handed-over send settled."""
    decisions = outputs.decisions
    problems = []
    per_member = decisions.groupby(["run_id", "user_id"]).size()
    problems += [f"run {r} has {n} outcomes for user {u}" for (r, u), n in per_member[per_member != 1].items()]
    for row in decisions.itertuples():
        outcome, reason = str(row.outcome), str(row.reason)
        if outcome in FINAL_SEND_OUTCOMES | SKIP_OUTCOMES:
            if outcome == "failed" and not (
                reason.startswith("failed:") or reason.startswith("dlq:") or reason == "no_channel"
            ):
                problems.append(f"{row.run_id} user {row.user_id}: failed without a reason ({reason!r})")
            continue
        if outcome == "waiting":
            until = pd.Timestamp(reason.removeprefix("waiting:")) if reason.startswith("waiting:") else None
            if until is not None and until.tzinfo is None:
                until = until.tz_localize("UTC")
            if until is None or until <= ended_at:
                problems.append(f"{row.run_id} user {row.user_id}: still waiting ({reason}) after the run ended")
            continue
        problems.append(f"{row.run_id} user {row.user_id}: outcome {outcome!r} ({reason}) is not a final SPEC outcome")
    return problems


def unsubscribe_violations(outputs: DemoOutputs) -> list[str]:
    """After an unsubscribe, that channel never carries advertising to that user again."""
    feedback = outputs.feedback
    if feedback.empty:
        return []
    unsubscribed = feedback[feedback["type"] == "unsubscribed"].merge(
        outputs.deliveries[["send_id", "user_id", "channel"]].drop_duplicates("send_id"),
        on="send_id",
        suffixes=("_event", ""),
    )
    outbox = outputs.outbox[outputs.outbox["purpose"] == "advertising"]
    problems = []
    for row in unsubscribed.itertuples():
        stop = pd.Timestamp(row.ts) + FEEDBACK_LAG
        later = outbox[
            (outbox["user_id"].astype(str) == str(row.user_id))
            & (outbox["channel"] == row.channel)
            & (outbox["sent_at"] > stop)
        ]
        problems += [
            f"user {row.user_id} unsubscribed from {row.channel} at {row.ts} but got advertising {s} at {t}"
            for s, t in later[["send_id", "sent_at"]].values
        ]
    return problems


def label_violations(outputs: DemoOutputs) -> list[str]:
    """The ad label and the opt-out text on every advertising SMS / Kakao message."""
    compliance = outputs.ruleset.policy.compliance
    outbox = outputs.outbox
    ads = outbox[
        (outbox["purpose"] == "advertising") & outbox["channel"].isin(["sms", "kakao_brand", "kakao_alimtalk"])
    ]
    problems = []
    for row in ads.itertuples():
        if not str(row.body).startswith(compliance.ad_label):
            problems.append(
                f"{row.channel} {row.send_id} does not start with {compliance.ad_label!r}: {row.body[:40]!r}"
            )
        if compliance.opt_out_text and compliance.opt_out_text not in str(row.body):
            problems.append(f"{row.channel} {row.send_id} has no opt-out text {compliance.opt_out_text!r}")
    return problems


def delivery_record_violations(outputs: DemoOutputs) -> list[str]:
    """Every message a customer received has a delivery record saying sent (or unknown after a crash)."""
    records = outputs.deliveries.groupby("send_id")["status"].agg(set)
    problems = []
    for send_id in outputs.outbox["send_id"]:
        statuses = records.get(send_id)
        if statuses is None or not statuses & {"sent", "unknown"}:
            problems.append(f"{send_id} was received but its delivery records say {statuses}")
    return problems


def first(problems: list[str], limit: int = 8) -> str:
    shown = "\n  ".join(problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} violation(s):\n  {shown}{more}"
