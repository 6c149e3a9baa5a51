"""Human-facing figures about a membership frame: sizes, shares and pairwise overlaps."""

from __future__ import annotations

import numpy as np
import pandas as pd


def segment_overlaps(membership: pd.DataFrame, segment_ids: list[str]) -> pd.DataFrame:
    """Members shared by every pair of ``segment_ids`` (the diagonal is each segment's size).

    One indicator matrix (members x segments) and one integer matrix product, so a million
    memberships cost a few tens of milliseconds rather than k² set intersections.
    """
    chosen = membership[membership["segment_id"].astype(str).isin(segment_ids)]
    users, user_index = pd.factorize(chosen["user_id"])
    column = {segment_id: position for position, segment_id in enumerate(segment_ids)}
    columns = chosen["segment_id"].astype(str).map(column).to_numpy(dtype=np.int64)
    indicator = np.zeros((len(user_index), len(segment_ids)), dtype=np.int32)
    indicator[users, columns] = 1
    shared = indicator.T.astype(np.int64) @ indicator.astype(np.int64)
    return pd.DataFrame(shared, index=segment_ids, columns=segment_ids)
