"""Run ids, send ids and the stable hash behind holdout and A/B variants (SPEC §2.4).

Everything here is a pure function of its inputs: the same user lands in the same group on every
run and every machine, whatever the Python hash seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

BASIS_POINTS = 10_000


def run_id(campaign_id: str, scheduled_at: datetime) -> str:
    """``cart_recovery@20261201T0100Z``: one run per campaign and scheduled minute (UTC)."""
    return f"{campaign_id}@{scheduled_at.astimezone(UTC).strftime('%Y%m%dT%H%MZ')}"


def send_id(run: str, user_id: object) -> str:
    """24 hex digits naming one message of one run to one user (stable across retries)."""
    return hashlib.sha256(f"{run}\x1f{user_id}".encode()).hexdigest()[:24]


def stable_bucket(salt: str, campaign_id: str, user_id: object, buckets: int) -> int:
    """A uniform integer in ``[0, buckets)`` from SHA-256 of ``(salt, campaign id, user id)``."""
    digest = hashlib.sha256(f"{salt}\x1f{campaign_id}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def in_holdout(campaign_id: str, user_id: object, holdout_basis_points: int) -> bool:
    """Whether the user is in the campaign's stable control group."""
    return stable_bucket("holdout", campaign_id, user_id, BASIS_POINTS) < holdout_basis_points


def pick_variant(campaign_id: str, user_id: object, variants: Sequence[tuple[str, int]]) -> str:
    """The variant id for a user, weighted by ``(id, weight)`` in listed order. Weights sum > 0."""
    total = sum(weight for _, weight in variants)
    point = stable_bucket("variant", campaign_id, user_id, total)
    for variant_id, weight in variants:
        if point < weight:
            return variant_id
        point -= weight
    raise ValueError("variant weights must have a positive sum")
