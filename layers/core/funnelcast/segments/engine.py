"""Vectorised evaluation of SPEC §2.2 condition nodes and §2.3 RFM over pandas frames.

Every customer gets an integer code (its row position); events are mapped to codes once and
every node is evaluated as a boolean numpy vector over customers (bincount / unique / sorted
searches, no per-user Python loops).

Null semantics are SQL-like: a null (or absent) attribute or event field fails every comparison,
``ne`` and ``not_in`` included; only ``missing`` holds for it (and ``exists`` fails).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from funnelcast.errors import DataContractError, RuleError
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
from funnelcast.segments.plan import evaluation_order

Mask = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
NAT = np.iinfo(np.int64).min
EPOCH = pd.Timestamp(0, tz="UTC")
LOADER_TS_DTYPE = pd.DatetimeTZDtype(unit="us", tz="UTC")
RFM_CODES = [f"{r}{f}{m}" for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]


class FramesLike(Protocol):
    """Anything with the two frames of the data contract (``funnelcast.data.load.Dataset``)."""

    @property
    def customers(self) -> pd.DataFrame: ...

    @property
    def events(self) -> pd.DataFrame: ...


@dataclass(frozen=True)
class Frames:
    """A hand-built dataset: customers and events frames."""

    customers: pd.DataFrame
    events: pd.DataFrame


@dataclass
class SegmentResult:
    """Membership (``user_id``, ``segment_id``), per-customer features, counts and timings."""

    membership: pd.DataFrame
    features: pd.DataFrame
    counts: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    unknown_user_events: int = 0
    """Events whose ``user_id`` is not a customer: ignored by every rule, counted in the manifest."""


def _as_utc(value: date | datetime | str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _micros(series: pd.Series) -> Ints:
    """Timestamps as int64 microseconds since the epoch (NaT -> int64 min).

    The loader's ``datetime64[us, UTC]`` columns are viewed without a copy of the values.
    """
    if series.dtype != LOADER_TS_DTYPE:
        series = pd.to_datetime(series, utc=True).dt.as_unit("us")
    return np.asarray(series.array.asi8, dtype=np.int64)


def _stamp_micros(value: date | datetime | str) -> int:
    return int((_as_utc(value) - EPOCH) // pd.Timedelta(microseconds=1))


def _is_temporal(series: pd.Series) -> bool:
    return bool(pd.api.types.is_datetime64_any_dtype(series.dtype))


def _compare(series: pd.Series, op: Op, value: Any, at: datetime, where: str) -> Mask:
    """Null-safe comparison of a column with a rule value (see module docstring)."""
    present = series.notna().to_numpy(dtype=bool)
    if op is Op.EXISTS:
        return present
    if op is Op.MISSING:
        return ~present
    if not present.any():
        # An absent or all-null column: every comparison fails (SQL-like nulls).
        return present
    temporal = _is_temporal(series)
    if op in (Op.WITHIN, Op.BEFORE):
        if not temporal:
            raise DataContractError(f"{where}: op {op.value!r} needs a timestamp column, got {series.dtype}")
        stamps = _micros(series)
        t_us = _stamp_micros(at)
        span = int(parse_duration(value) // timedelta(microseconds=1))
        if op is Op.WITHIN:
            return present & (stamps > t_us - span) & (stamps <= t_us)
        return present & (stamps <= t_us - span)
    column: pd.Series = series
    if temporal:
        column = pd.Series(_micros(series), index=series.index)

        def convert(item: Any) -> Any:
            return _stamp_micros(item) if isinstance(item, (date, datetime, str)) else item
    else:

        def convert(item: Any) -> Any:
            return item

    if isinstance(column.dtype, pd.CategoricalDtype):
        # Compare the few categories once, then look every row's code up (no per-row strings).
        categories = pd.Series(column.cat.categories)
        verdict = _compare(categories, op, value, at, where)
        codes = column.cat.codes.to_numpy()
        return np.append(verdict, False)[codes]  # code -1 (null) picks the trailing False
    try:
        if op in (Op.IN, Op.NOT_IN):
            values = [convert(item) for item in value]
            result = column.isin(values).to_numpy(dtype=bool)
            if op is Op.NOT_IN:
                result = ~result
        elif op is Op.BETWEEN:
            low, high = convert(value[0]), convert(value[1])
            result = ((column >= low) & (column <= high)).fillna(False).to_numpy(dtype=bool)
        else:
            target = convert(value)
            operations = {
                Op.EQ: column.__eq__,
                Op.NE: column.__ne__,
                Op.GT: column.__gt__,
                Op.GTE: column.__ge__,
                Op.LT: column.__lt__,
                Op.LTE: column.__le__,
            }
            result = operations[op](target).fillna(False).to_numpy(dtype=bool)
    except TypeError as exc:
        raise DataContractError(f"{where}: cannot compare column of type {series.dtype} with {value!r}") from exc
    return present & result


def _bound(values: npt.NDArray[Any], bound: Bound) -> Mask:
    result = np.ones(values.shape, dtype=bool)
    for name, threshold in bound.comparisons():
        if name == "eq":
            result &= values == threshold
        elif name == "ne":
            result &= values != threshold
        elif name == "gt":
            result &= values > threshold
        elif name == "gte":
            result &= values >= threshold
        elif name == "lt":
            result &= values < threshold
        else:
            result &= values <= threshold
    return result


def _share_bound(numerator: Ints, denominator: Ints, bound: Bound) -> Mask:
    """Exact rational comparison ``numerator / denominator  op  threshold`` (false when 0/0)."""
    result = denominator > 0
    largest = int(max(numerator.max(initial=0), denominator.max(initial=0)))
    for name, threshold in bound.comparisons():
        ratio = Fraction(str(threshold))
        # Integer cross-multiplication; int64 when it cannot overflow, Python ints otherwise.
        exact_in_int64 = largest * max(ratio.numerator, ratio.denominator) < 2**62
        num = numerator if exact_in_int64 else numerator.astype(object)
        den = denominator if exact_in_int64 else denominator.astype(object)
        left = num * ratio.denominator
        right = den * ratio.numerator
        if name == "eq":
            result &= np.asarray(left == right, dtype=bool)
        elif name == "ne":
            result &= np.asarray(left != right, dtype=bool)
        elif name == "gt":
            result &= np.asarray(left > right, dtype=bool)
        elif name == "gte":
            result &= np.asarray(left >= right, dtype=bool)
        elif name == "lt":
            result &= np.asarray(left < right, dtype=bool)
        else:
            result &= np.asarray(left <= right, dtype=bool)
    return result


def rfm_scores(ranked_values: npt.NDArray[Any], present: Mask) -> npt.NDArray[np.int64]:
    """SPEC §2.3 scores (0 = no score) from values ranked ascending with min ties."""
    scores = np.zeros(len(ranked_values), dtype=np.int64)
    n = int(present.sum())
    if n == 0:
        return scores
    ranks = pd.Series(ranked_values[present]).rank(method="min").to_numpy(dtype=np.int64)
    scores[present] = 1 + (5 * (ranks - 1)) // n
    return scores


#: Users x distinct values up to which per-(user, value) counts use one dense bincount.
DENSE_PAIR_LIMIT = 64_000_000


def _default_index(frame: pd.DataFrame) -> bool:
    index = frame.index
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _sorted_codes(column: pd.Series) -> tuple[npt.NDArray[np.integer[Any]], Ints | None, npt.NDArray[Any]]:
    """Codes (-1 = null), an optional code -> rank table, and the distinct values sorted ascending.

    Categoricals reuse their codes in their own small integer dtype (no 20M-row upcast); when the
    categories are not sorted, ``rank[code]`` gives the position in the sorted values. Other columns
    are factorized with ``sort=True`` (no rank table needed).
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = np.asarray(column.cat.categories, dtype=object)
        order = np.argsort(categories, kind="stable")
        rank: Ints | None = None
        if (order != np.arange(len(order))).any():
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
        return column.cat.codes.to_numpy(), rank, categories[order]
    codes, uniques = pd.factorize(column, sort=True)
    return codes, None, np.asarray(uniques, dtype=object)


def _check_same_id_kind(customer_ids: pd.Series, event_ids: pd.Series | None) -> None:
    """``user_id`` must be integers in both frames or text in both (SPEC §1: never re-typed silently)."""
    if event_ids is None or not len(event_ids):
        return
    numeric = [pd.api.types.is_integer_dtype(ids.dtype) for ids in (customer_ids, event_ids)]
    if numeric[0] != numeric[1]:
        raise DataContractError(
            f"user_id is {customer_ids.dtype} in customers but {event_ids.dtype} in events: "
            "use the same kind (integer or text) in both"
        )


def user_codes(customer_ids: pd.Series, event_ids: pd.Series) -> Ints:
    """Each event's customer row (-1 for events of unknown users).

    Integer ids within a compact range use a direct lookup table (one gather, no hashing);
    anything else goes through a hash index.

    Raises
    ------
    DataContractError
        When a ``user_id`` repeats in ``customer_ids``.
    """
    if pd.api.types.is_integer_dtype(customer_ids.dtype) and pd.api.types.is_integer_dtype(event_ids.dtype):
        ids = customer_ids.to_numpy(dtype=np.int64)
        events = event_ids.to_numpy(dtype=np.int64)
        if len(ids):
            low, high = int(ids.min()), int(ids.max())
            if high - low < 4 * len(ids) + 1024:
                table = np.full(high - low + 1, -1, dtype=np.int64)
                table[ids - low] = np.arange(len(ids), dtype=np.int64)
                if (table >= 0).sum() != len(ids):
                    raise DataContractError("customers frame repeats user_id values")
                if not len(events) or (int(events.min()) >= low and int(events.max()) <= high):
                    return table[events - low]
                inside = (events >= low) & (events <= high)
                codes = np.full(len(events), -1, dtype=np.int64)
                codes[inside] = table[events[inside] - low]
                return codes
    index = pd.Index(customer_ids)
    if not index.is_unique:
        raise DataContractError("customers frame repeats user_id values")
    return np.asarray(index.get_indexer(event_ids), dtype=np.int64)


@dataclass
class _ValueTally:
    """Per (user, value) event counts, dense (``users x values``) or sparse (pairs sorted by user, value)."""

    n: int
    uniques: npt.NDArray[Any]
    dense: npt.NDArray[np.int64] | None = None
    users: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    counts: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    codes: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def some_value(self, bound: Bound) -> Mask:
        """Users for whom some single value's (non-zero) count satisfies ``bound`` (``per``)."""
        if self.dense is not None:
            return np.asarray((_bound(self.dense, bound) & (self.dense > 0)).any(axis=1), dtype=bool)
        result = np.zeros(self.n, dtype=bool)
        result[self.users[_bound(self.counts, bound)]] = True
        return result

    def top(self) -> tuple[Ints, Ints, npt.NDArray[Any]]:
        """Each user's highest count, the code of its value (-1 = none; ties: smallest), the values."""
        if self.dense is not None:
            if self.dense.shape[1] == 0:
                return np.zeros(self.n, dtype=np.int64), np.full(self.n, -1, dtype=np.int64), self.uniques
            top = self.dense.max(axis=1)
            # argmax returns the first maximum: values are in ascending order, so the smallest.
            chosen = np.where(top > 0, self.dense.argmax(axis=1), -1)
            return top.astype(np.int64, copy=False), chosen.astype(np.int64, copy=False), self.uniques
        top = np.zeros(self.n, dtype=np.int64)
        np.maximum.at(top, self.users, self.counts)
        # Pairs are sorted by user then value: the first pair of a user at its maximum is the smallest.
        top_pairs = np.flatnonzero(self.counts == top[self.users])
        top_users = self.users[top_pairs]
        first = np.ones(len(top_pairs), dtype=bool)
        first[1:] = top_users[1:] != top_users[:-1]
        chosen = np.full(self.n, -1, dtype=np.int64)
        chosen[top_users[first]] = self.codes[top_pairs[first]]
        return top, chosen, self.uniques


class _Evaluator:
    def __init__(self, ruleset: RuleSet, customers: pd.DataFrame, events: pd.DataFrame, at: datetime) -> None:
        if "user_id" not in customers.columns:
            raise DataContractError("customers frame has no user_id column")
        self.ruleset = ruleset
        self.customers = customers.reset_index(drop=True)
        self.n = len(self.customers)
        self.at = at
        self.t_us = _stamp_micros(at)
        _check_same_id_kind(self.customers["user_id"], events["user_id"] if "user_id" in events.columns else None)
        if len(events):
            codes = user_codes(self.customers["user_id"], events["user_id"])
            keep = codes >= 0
            self.unknown_user_events = int(len(keep) - np.count_nonzero(keep))
            stamps = _micros(events["ts"])
            keep &= (stamps != NAT) & (stamps <= self.t_us)
            if keep.all():
                # The loader already dropped rows after T: no copy of the event frame.
                self.events = events.reset_index(drop=True) if not _default_index(events) else events
                self.codes: Ints = codes
                self.ts: Ints = stamps
            else:
                self.events = events.loc[keep].reset_index(drop=True)
                self.codes = codes[keep]
                self.ts = stamps[keep]
            self.types = self.events["event_type"]
            if not isinstance(self.types.dtype, pd.CategoricalDtype):
                self.types = self.types.astype("category")
        else:
            self.unknown_user_events = 0
            if not pd.Index(self.customers["user_id"]).is_unique:
                raise DataContractError("customers frame repeats user_id values")
            self.events = events
            self.codes = np.zeros(0, dtype=np.int64)
            self.ts = np.zeros(0, dtype=np.int64)
            self.types = pd.Series([], dtype="category")
        self.results: dict[str, Mask] = {}
        self.exports: dict[str, pd.Series] = {}
        self._type_cache: dict[str, Mask] = {}
        self._window_cache: dict[timedelta, Mask] = {}
        self.rfm = self._compute_rfm()

    # -- events ---------------------------------------------------------------------------------
    def _type_mask(self, event_type: str) -> Mask:
        if event_type not in self._type_cache and event_type == "*":
            self._type_cache[event_type] = np.ones(len(self.codes), dtype=bool)
        if event_type not in self._type_cache:
            categories = self.types.cat.categories
            codes = self.types.cat.codes.to_numpy()
            if event_type in categories:
                self._type_cache[event_type] = codes == categories.get_loc(event_type)
            else:
                self._type_cache[event_type] = np.zeros(len(codes), dtype=bool)
        return self._type_cache[event_type]

    def _field_mask(self, conditions: list[FieldCondition], where: str, mask: Mask) -> Mask:
        """``mask`` narrowed to the events meeting every condition (a new array; ``mask`` is kept)."""
        for condition in conditions:
            if condition.field not in self.events.columns:
                # An absent column is null on every row: only 'missing' holds.
                matched = np.full(len(self.codes), condition.op is Op.MISSING, dtype=bool)
            else:
                column = self.events[condition.field]
                matched = _compare(column, condition.op, condition.value, self.at, f"{where} field {condition.field!r}")
            mask = mask & matched
        return mask

    def _amounts(self, field_name: str, mask: Mask) -> npt.NDArray[np.float64]:
        """Values of a numeric event column for the masked events; null (or non-numeric) counts as 0."""
        column = self.events[field_name]
        if pd.api.types.is_float_dtype(column.dtype) and not isinstance(column.dtype, pd.api.extensions.ExtensionDtype):
            values = column.to_numpy()[mask]  # a view, then only the selected rows
        else:
            values = pd.to_numeric(column[mask], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return np.nan_to_num(values, nan=0.0)

    def _window(self, within: timedelta) -> Mask:
        """Events in the half-open window ``(T - within, T]`` (SPEC §2.1); later events are gone already."""
        if within not in self._window_cache:
            span = int(within // timedelta(microseconds=1))
            self._window_cache[within] = self.ts > self.t_us - span
        return self._window_cache[within]

    def _value_tally(self, mask: Mask, field_name: str) -> _ValueTally:
        """Per (user, value) counts of the masked events with a non-null ``field_name``.

        Dense (users x values matrix, one bincount) when that matrix is small, as for a category;
        sparse (one sort of the pair keys) otherwise, as for a product id. Values are ranked in
        ascending order so that ties resolve to the smallest value.
        """
        if field_name not in self.events.columns:
            return _ValueTally(self.n, np.zeros(0, dtype=object), dense=np.zeros((self.n, 0), dtype=np.int64))
        value_codes, rank, uniques = _sorted_codes(self.events[field_name])
        mask = mask & (value_codes >= 0)
        chosen = value_codes[mask].astype(np.int64, copy=False)
        if rank is not None:
            chosen = rank[chosen]
        width = max(len(uniques), 1)
        keys = self.codes[mask] * width + chosen
        if self.n * width <= DENSE_PAIR_LIMIT:
            dense = np.bincount(keys, minlength=self.n * width).reshape(self.n, width)
            return _ValueTally(self.n, uniques, dense=dense)
        unique_keys, counts = np.unique(keys, return_counts=True)
        return _ValueTally(
            self.n,
            uniques,
            users=unique_keys // width,
            counts=counts.astype(np.int64, copy=False),
            codes=unique_keys % width,
        )

    def event(self, node: EventNode) -> Mask:
        where = f"event node {node.event!r}"
        mask = self._field_mask(node.where, where, self._type_mask(node.event) & self._window(node.within))
        counts = np.bincount(self.codes[mask], minlength=self.n).astype(np.int64, copy=False)
        if node.per is not None:
            return self._value_tally(mask, node.per).some_value(node.effective_count)
        result = _bound(counts, node.effective_count)
        if node.sum is not None and node.value is not None:
            if node.sum not in self.events.columns:
                sums = np.zeros(self.n)
            else:
                sums = np.bincount(self.codes[mask], weights=self._amounts(node.sum, mask), minlength=self.n)
            result &= _bound(sums, node.value)
        if node.share is not None:
            inner = self._field_mask(node.share.where, f"{where} share", mask)
            numerator = np.bincount(self.codes[inner], minlength=self.n).astype(np.int64, copy=False)
            result &= _share_bound(numerator, counts, node.share)
        if node.top_share is not None:
            top, chosen, uniques = self._value_tally(mask, node.top_share.field).top()
            export = pd.Series(pd.Categorical.from_codes(chosen, categories=pd.Index(uniques)))
            name = f"top_{node.top_share.field}"
            if name in self.exports:
                # Several nodes export the same field: the first evaluated with a value wins.
                earlier = self.exports[name].astype(object)
                self.exports[name] = earlier.where(earlier.notna(), export.astype(object)).astype("category")
            else:
                self.exports[name] = export
            result &= _share_bound(top, counts, node.top_share)
        if node.not_followed_by is not None:
            follow = node.not_followed_by
            early = mask & (self.ts <= self.t_us - int(follow.after // timedelta(microseconds=1)))
            latest = np.full(self.n, NAT, dtype=np.int64)
            np.maximum.at(latest, self.codes[early], self.ts[early])
            followers = self._type_mask(follow.event)
            latest_follow = np.full(self.n, NAT, dtype=np.int64)
            np.maximum.at(latest_follow, self.codes[followers], self.ts[followers])
            result &= (latest != NAT) & (latest_follow <= latest)
        return result

    # -- rfm -------------------------------------------------------------------------------------
    def _compute_rfm(self) -> pd.DataFrame:
        policy = self.ruleset.policy.rfm
        mask = self._type_mask(policy.event) & self._window(policy.lookback)
        codes = self.codes[mask]
        frequency = np.bincount(codes, minlength=self.n).astype(np.int64, copy=False)
        recency = np.full(self.n, NAT, dtype=np.int64)
        np.maximum.at(recency, codes, self.ts[mask])
        if policy.amount_field in self.events.columns:
            monetary = np.bincount(codes, weights=self._amounts(policy.amount_field, mask), minlength=self.n)
        else:
            monetary = np.zeros(self.n)
        present = frequency > 0
        frame = pd.DataFrame(
            {
                "rfm_r": rfm_scores(recency, present),
                "rfm_f": rfm_scores(frequency, present),
                "rfm_m": rfm_scores(monetary, present),
            }
        )
        # rfm_code "r f m" as a categorical over the 125 codes (no per-row string building).
        code_numbers = 25 * (frame["rfm_r"].to_numpy() - 1) + 5 * (frame["rfm_f"].to_numpy() - 1)
        code_numbers += frame["rfm_m"].to_numpy() - 1
        frame["rfm_code"] = pd.Categorical.from_codes(np.where(present, code_numbers, -1), categories=RFM_CODES)
        for column in ("rfm_r", "rfm_f", "rfm_m"):
            frame[column] = pd.arrays.IntegerArray(frame[column].to_numpy().astype(np.int8), mask=~present)
        return frame

    def rfm_node(self, node: RfmNode) -> Mask:
        spec = node.rfm
        present = self.rfm["rfm_r"].notna().to_numpy(dtype=bool)
        if spec.code is not None:
            return present & self.rfm["rfm_code"].isin(spec.code).to_numpy(dtype=bool)
        result = present.copy()
        for column, allowed in (("rfm_r", spec.r), ("rfm_f", spec.f), ("rfm_m", spec.m)):
            if allowed is not None:
                result &= self.rfm[column].isin(allowed).fillna(False).to_numpy(dtype=bool)
        return result

    # -- tree ------------------------------------------------------------------------------------
    def evaluate(self, node: Node) -> Mask:
        if isinstance(node, AllNode):
            result = np.ones(self.n, dtype=bool)
            for child in node.all:
                result &= self.evaluate(child)
            return result
        if isinstance(node, AnyNode):
            result = np.zeros(self.n, dtype=bool)
            for child in node.any:
                result |= self.evaluate(child)
            return result
        if isinstance(node, NotNode):
            return ~self.evaluate(node.not_)
        if isinstance(node, AttributeNode):
            if node.attribute not in self.customers.columns:
                # An absent column is missing for everyone: only 'missing' holds.
                return np.full(self.n, node.op is Op.MISSING, dtype=bool)
            column = self.customers[node.attribute]
            return _compare(column, node.op, node.value, self.at, f"attribute {node.attribute!r}")
        if isinstance(node, EventNode):
            return self.event(node)
        if isinstance(node, RfmNode):
            return self.rfm_node(node)
        if isinstance(node, SegmentRefNode):
            if node.segment not in self.results:
                raise RuleError([f"segment {node.segment!r} is referenced before it was evaluated"])
            return self.results[node.segment]
        raise RuleError([f"unknown condition node {type(node).__name__}"])


def compute_segments(ruleset: RuleSet, dataset: FramesLike, at: datetime) -> SegmentResult:
    """Evaluate every segment and campaign pseudo-segment of ``ruleset`` at reference time ``at``.

    Parameters
    ----------
    dataset
        Normalised frames of the data contract (``Dataset`` or :class:`Frames`).
    at
        The reference time ``T``; events after it are ignored.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    evaluator = _Evaluator(ruleset, dataset.customers, dataset.events, at)
    timings["prepare"] = time.perf_counter() - started
    for planned in evaluation_order(ruleset):
        tick = time.perf_counter()
        evaluator.results[planned.segment_id] = evaluator.evaluate(planned.where)
        timings[planned.segment_id] = time.perf_counter() - tick
    user_ids = evaluator.customers["user_id"]
    segment_ids = list(evaluator.results)
    counts = {segment_id: int(mask.sum()) for segment_id, mask in evaluator.results.items()}
    rows = (
        np.concatenate([np.flatnonzero(mask) for mask in evaluator.results.values()])
        if segment_ids
        else np.zeros(0, dtype=np.int64)
    )
    segment_codes = np.repeat(np.arange(len(segment_ids), dtype=np.int32), [counts[s] for s in segment_ids])
    membership = pd.DataFrame(
        {
            "user_id": user_ids.take(rows).reset_index(drop=True),
            "segment_id": pd.Categorical.from_codes(segment_codes, categories=pd.Index(segment_ids, dtype=object)),
        }
    )
    features = pd.concat([evaluator.customers, evaluator.rfm], axis=1)
    for name, export in evaluator.exports.items():
        features[name] = export.array
    timings["total"] = time.perf_counter() - started
    return SegmentResult(
        membership=membership,
        features=features,
        counts=counts,
        timings=timings,
        unknown_user_events=evaluator.unknown_user_events,
    )
