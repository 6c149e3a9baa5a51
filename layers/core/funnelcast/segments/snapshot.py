"""Versioned segment snapshots: ``segments/<T>/<rules_hash>/`` files, then ``segments/latest.json``.

The pointer is written last, so a crash mid-write leaves readers on the previous complete snapshot.
``store`` is the data bucket root (not the input prefix).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from funnelcast.errors import ObjectNotFoundError, SnapshotMissingError
from funnelcast.storage import ObjectStore

LATEST_KEY = "segments/latest.json"


@dataclass(frozen=True)
class SegmentSnapshot:
    """A complete snapshot as the planner reads it."""

    membership: pd.DataFrame
    features: pd.DataFrame
    at: datetime
    rules_hash: str
    manifest: dict[str, Any]
    prefix: str


def snapshot_prefix(at: datetime, rules_hash: str) -> str:
    """``segments/<T:%Y%m%dT%H%MZ>/<rules_hash>/``."""
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    return f"segments/{stamp}/{rules_hash}/"


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def parquet_to_frame(body: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(body))


def entered_exited(current: pd.DataFrame, previous: pd.DataFrame | None) -> dict[str, dict[str, int]]:
    """Per segment, members that entered and exited since ``previous`` (all entered when none)."""
    now_pairs = current[["user_id", "segment_id"]].astype({"segment_id": str})
    result: dict[str, dict[str, int]] = {}
    if previous is None:
        counts = now_pairs.groupby("segment_id").size()
        for segment_id in current["segment_id"].astype("category").cat.categories:
            result[str(segment_id)] = {"entered": int(counts.get(segment_id, 0)), "exited": 0}
        return result
    before_pairs = previous[["user_id", "segment_id"]].astype({"segment_id": str})
    if before_pairs["user_id"].dtype != now_pairs["user_id"].dtype:
        before_pairs = before_pairs.astype({"user_id": now_pairs["user_id"].dtype})
    merged = now_pairs.merge(before_pairs, how="outer", on=["user_id", "segment_id"], indicator=True)
    entered = merged[merged["_merge"] == "left_only"].groupby("segment_id").size()
    exited = merged[merged["_merge"] == "right_only"].groupby("segment_id").size()
    ids = sorted(set(now_pairs["segment_id"]) | set(current["segment_id"].astype("category").cat.categories))
    for segment_id in ids:
        result[str(segment_id)] = {
            "entered": int(entered.get(segment_id, 0)),
            "exited": int(exited.get(segment_id, 0)),
        }
    return result


def write_snapshot(
    store: ObjectStore,
    *,
    membership: pd.DataFrame,
    features: pd.DataFrame,
    at: datetime,
    rules_hash: str,
    manifest: dict[str, Any],
) -> str:
    """Write the snapshot files, then move ``latest.json``; returns the snapshot prefix."""
    prefix = snapshot_prefix(at, rules_hash)
    store.put_bytes(prefix + "membership.parquet", frame_to_parquet(membership))
    store.put_bytes(prefix + "features.parquet", frame_to_parquet(features))
    store.put_bytes(prefix + "manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False).encode())
    move_latest(store, prefix=prefix, at=at, rules_hash=rules_hash)
    return prefix


def move_latest(store: ObjectStore, *, prefix: str, at: datetime, rules_hash: str) -> None:
    """Point ``segments/latest.json`` at a complete snapshot (always the last write of a run)."""
    pointer = {"snapshot": prefix, "at": at.astimezone(UTC).isoformat(), "rules_hash": rules_hash}
    store.put_bytes(LATEST_KEY, json.dumps(pointer).encode())


def read_latest_pointer(store: ObjectStore) -> dict[str, Any] | None:
    try:
        body = store.get_bytes(LATEST_KEY)
    except ObjectNotFoundError:
        return None
    pointer: dict[str, Any] = json.loads(body)
    return pointer


def load_latest_membership(store: ObjectStore) -> pd.DataFrame | None:
    """The membership of the current snapshot, or ``None`` when there is none yet."""
    pointer = read_latest_pointer(store)
    if pointer is None:
        return None
    return parquet_to_frame(store.get_bytes(str(pointer["snapshot"]) + "membership.parquet"))


def load_latest_snapshot(store: ObjectStore) -> SegmentSnapshot:
    """The snapshot ``segments/latest.json`` points at.

    Raises
    ------
    SnapshotMissingError
        When no snapshot was written yet, or the pointer names files that are gone.
    """
    pointer = read_latest_pointer(store)
    if pointer is None:
        raise SnapshotMissingError(f"no segment snapshot yet: {store.uri(LATEST_KEY)} does not exist")
    prefix = str(pointer["snapshot"])
    try:
        membership = parquet_to_frame(store.get_bytes(prefix + "membership.parquet"))
        features = parquet_to_frame(store.get_bytes(prefix + "features.parquet"))
        manifest: dict[str, Any] = json.loads(store.get_bytes(prefix + "manifest.json"))
    except ObjectNotFoundError as exc:
        raise SnapshotMissingError(f"{store.uri(LATEST_KEY)} points at an incomplete snapshot {prefix}") from exc
    membership["segment_id"] = membership["segment_id"].astype("category")
    return SegmentSnapshot(
        membership=membership,
        features=features,
        at=datetime.fromisoformat(str(pointer["at"])),
        rules_hash=str(pointer["rules_hash"]),
        manifest=manifest,
        prefix=prefix,
    )
