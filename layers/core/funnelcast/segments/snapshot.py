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

import numpy as np
import numpy.typing as npt
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
    """Per segment, members that entered and exited since ``previous`` (all entered when none).

    Every segment of ``current`` (its categories, empty ones included) and of ``previous`` is
    reported. Pairs are compared as integer keys ``segment x user`` with one sorted membership test,
    so millions of memberships take well under a second.
    """
    now_segments = _segment_labels(current)
    before_segments = _segment_labels(previous) if previous is not None else []
    ids = list(dict.fromkeys([*now_segments, *before_segments]))
    position = {segment_id: index for index, segment_id in enumerate(ids)}
    now_codes = _segment_codes(current, position)
    if previous is None or previous.empty:
        entered = np.bincount(now_codes, minlength=len(ids))
        return {segment_id: {"entered": int(entered[i]), "exited": 0} for i, segment_id in enumerate(ids)}
    before_codes = _segment_codes(previous, position)
    before_users = previous["user_id"]
    if before_users.dtype != current["user_id"].dtype:
        before_users = before_users.astype(current["user_id"].dtype)
    users, _ = pd.factorize(pd.concat([current["user_id"], before_users], ignore_index=True))
    width = int(users.max()) + 1 if len(users) else 1
    now_keys = now_codes * width + users[: len(current)]
    before_keys = before_codes * width + users[len(current) :]
    entered = np.bincount(now_codes[~np.isin(now_keys, before_keys)], minlength=len(ids))
    exited = np.bincount(before_codes[~np.isin(before_keys, now_keys)], minlength=len(ids))
    return {segment_id: {"entered": int(entered[i]), "exited": int(exited[i])} for i, segment_id in enumerate(ids)}


def _segment_labels(membership: pd.DataFrame) -> list[str]:
    column = membership["segment_id"]
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(label) for label in column.cat.categories]
    return sorted({str(label) for label in column.unique()})


def _segment_codes(membership: pd.DataFrame, position: dict[str, int]) -> npt.NDArray[np.int64]:
    """Each row's index in ``position`` (via the few categories, not per-row strings)."""
    column = membership["segment_id"]
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(str).astype("category")
    table = np.array([position[str(label)] for label in column.cat.categories], dtype=np.int64)
    return table[column.cat.codes.to_numpy()]


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
    return _load_snapshot(store, pointer)


class LatestSnapshotReader:
    """:func:`load_latest_snapshot` for a warm container: keeps the last snapshot it loaded.

    A snapshot's files never change once ``latest.json`` points at them, so while the pointer is
    the same only ``latest.json`` is read again (an hourly campaign between six-hourly recomputes
    reads one small object instead of three). The frames are shared between calls: read-only.
    """

    def __init__(self) -> None:
        self._pointer: tuple[str, dict[str, Any]] | None = None
        self._snapshot: SegmentSnapshot | None = None

    def __call__(self, store: ObjectStore) -> SegmentSnapshot:
        pointer = read_latest_pointer(store)
        if pointer is None:
            raise SnapshotMissingError(f"no segment snapshot yet: {store.uri(LATEST_KEY)} does not exist")
        key = (store.uri(LATEST_KEY), pointer)
        if self._snapshot is None or self._pointer != key:
            self._snapshot = _load_snapshot(store, pointer)
            self._pointer = key
        return self._snapshot


def _load_snapshot(store: ObjectStore, pointer: dict[str, Any]) -> SegmentSnapshot:
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
