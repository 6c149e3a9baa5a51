"""Load customers and events from a data root (S3 or a folder) into the frames the segment engine reads.

Contract (``/work/prompts/data_contract.md``, SPEC §1):

* ``customers/**/*.parquet|*.csv`` and ``events/**/*.parquet|*.csv``; hive partitions
  ``events/.../dt=YYYY-MM-DD/`` are pruned with ``DataNeeds.earliest`` / ``until`` and the ``dt``
  column is never added; keys with a path part starting with ``_`` or ``.`` (``_quarantine/``,
  ``_SUCCESS``, hidden files) are skipped.
* Only the needed columns are read (Parquet column projection), string properties come back as
  dictionaries (pandas ``category``), ``user_id`` as ``int64`` or ``string[pyarrow]`` (the same in
  both frames), timestamps ``datetime64[us, UTC]`` (naive text or values are UTC; offsets are
  converted), booleans pandas ``boolean``, ``amount`` ``float64``.
* A row that breaks the contract (null ``user_id``, null or unparseable ``ts``, null
  ``event_type``, text or negative ``amount``, a boolean column holding something else, an
  unparseable ``signup_at``) is quarantined: written to ``_quarantine/<run_id>/customers.parquet``
  or ``events.parquet`` (original columns as text plus ``reason`` and ``source_file``) and counted;
  the run goes on. An unreadable file, a missing required column, or ``user_id`` that is an integer
  in one file and text in another raise :class:`~funnelcast.errors.DataContractError` naming the
  file(s) and the column.
* Duplicate customer ``user_id``: the last row wins (in key order, then row order); the others
  are counted in ``duplicates_dropped``.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from funnelcast.errors import DataContractError, StorageError
from funnelcast.storage import LocalStore, ObjectStore

if TYPE_CHECKING:
    from funnelcast.segments.plan import DataNeeds

Kind = Literal["customers", "events"]
IdKind = Literal["int", "string"]
Progress = Callable[[int, int], None]

DATA_SUFFIXES = (".parquet", ".csv")
REQUIRED: dict[str, tuple[str, ...]] = {"customers": ("user_id",), "events": ("user_id", "ts", "event_type")}
CUSTOMER_BOOLEANS = frozenset(
    {"kakao_friend", "consent_email", "consent_sms", "consent_push", "consent_kakao", "consent_night_ads"}
)
CUSTOMER_TIMESTAMPS = frozenset({"signup_at"})
EVENT_BOOLEANS = frozenset({"is_promo"})
EVENT_NUMBERS = frozenset({"amount"})
#: Columns read from CSV as text so that we, not the CSV type inference, decide their type.
CSV_TEXT_COLUMNS = ("user_id", "ts", "signup_at")
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")
CANONICAL_INT = r"^-?(0|[1-9][0-9]{0,17})$"
PARTITION = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})(?:/|$)")
#: Customer text columns with more distinct values than this share of rows stay plain strings.
DICTIONARY_MAX_SHARE = 0.5
DICTIONARY_SAMPLE = 20_000
UTC_MICROS = pa.timestamp("us", tz="UTC")
#: Files read at once (S3 round trips and Parquet decoding overlap; Lambda has up to 6 vCPUs).
READ_THREADS = 8


@dataclass
class Dataset:
    """Normalised customers and events of one run, with what was quarantined, dropped and read."""

    customers: pd.DataFrame
    events: pd.DataFrame
    quarantined: dict[str, int] = field(default_factory=dict)
    duplicates_dropped: int = 0
    files_read: list[str] = field(default_factory=list)
    bytes_read: int = 0
    quarantine_files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent reading and checking files, writing quarantine, and building each frame."""


@dataclass
class _FilePart:
    """One file after validation: the good rows and the quarantined ones."""

    key: str
    good: pa.Table
    bad: pa.Table | None
    id_kind: IdKind | None


@dataclass
class _Reasons:
    """First failing check per row (0 = good), in check order."""

    rows: int
    labels: list[str] = field(default_factory=list)
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))

    def __post_init__(self) -> None:
        self.codes = np.zeros(self.rows, dtype=np.int8)

    def flag(self, bad: np.ndarray, reason: str) -> None:
        fresh = bad & (self.codes == 0)
        if fresh.any():
            if reason not in self.labels:
                self.labels.append(reason)
            self.codes[fresh] = self.labels.index(reason) + 1

    @property
    def good(self) -> np.ndarray:
        return self.codes == 0

    def of_bad(self) -> pa.Array:
        labels = np.array(["", *self.labels], dtype=object)
        return pa.array(labels[self.codes[self.codes != 0]], pa.string())


# --- listing ----------------------------------------------------------------------------------
def _is_data_key(key: str, prefix: str) -> bool:
    rest = key[len(prefix) :]
    parts = rest.split("/")
    return key.endswith(DATA_SUFFIXES) and not any(part.startswith(("_", ".")) for part in parts)


def _partition_day(key: str) -> date | None:
    match = PARTITION.search(key)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def list_data_keys(store: ObjectStore, kind: Kind, needs: DataNeeds | None = None) -> list[str]:
    """Data files of ``kind`` under the root, events pruned to the partitions ``needs`` can use.

    A ``dt=`` partition is kept when its day can hold an event in ``(earliest, until]``; one day of
    slack on each side keeps partitions written in a local day (rows are filtered by ``ts`` anyway).
    """
    prefix = f"{kind}/"
    keys = [key for key in store.list_keys(prefix) if _is_data_key(key, prefix)]
    if kind == "customers" or needs is None:
        return keys
    first = (needs.earliest.date() - timedelta(days=1)) if needs.earliest is not None else None
    last = needs.until.date() + timedelta(days=1)
    kept = []
    for key in keys:
        day = _partition_day(key)
        if day is None or ((first is None or day >= first) and day <= last):
            kept.append(key)
    return kept


# --- reading ----------------------------------------------------------------------------------
def _source(store: ObjectStore, key: str) -> tuple[Any, int]:
    """A path (local stores: memory-mapped, no copy) or an in-memory buffer, and its size."""
    if isinstance(store, LocalStore):
        path = Path(store.uri(key))
        try:
            return str(path), path.stat().st_size
        except OSError as exc:
            raise StorageError(f"cannot read {store.uri(key)}: {exc}") from exc
    body = store.get_bytes(key)
    return pa.BufferReader(body), len(body)


def _read_file(
    store: ObjectStore, key: str, wanted: frozenset[str] | None, *, dictionary_text: bool = False
) -> tuple[pa.Table, int]:
    """Read one file, projected to ``wanted`` columns (``None`` = all).

    With ``dictionary_text`` plain text columns of a Parquet file come back as dictionaries straight
    from the file (no per-row strings); files written from pandas categoricals already are.
    """
    uri = store.uri(key)
    source, size = _source(store, key)
    if size == 0:
        return pa.table({}), 0
    try:
        if key.endswith(".parquet"):
            mapped = isinstance(source, str)
            parquet = pq.ParquetFile(source, memory_map=mapped)
            schema = parquet.schema_arrow
            columns = [name for name in schema.names if wanted is None or name in wanted]
            plain_text = [
                name
                for name in columns
                if name not in CSV_TEXT_COLUMNS
                and (pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(schema.field(name).type))
            ]
            if dictionary_text and plain_text:
                if not mapped:
                    source.seek(0)
                parquet = pq.ParquetFile(source, memory_map=mapped, read_dictionary=plain_text)
            return parquet.read(columns=columns), size
        if isinstance(source, str):
            source = pa.memory_map(source)
        table = pacsv.read_csv(
            source,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(CSV_TEXT_COLUMNS, pa.string()), strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError) as exc:
        raise DataContractError(f"{uri}: unreadable file: {exc}") from exc
    if wanted is not None:
        table = table.select([name for name in table.column_names if name in wanted])
    return table, size


# --- normalising ------------------------------------------------------------------------------
def _is_text(kind_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind_type)
        or pa.types.is_large_string(kind_type)
        or (pa.types.is_dictionary(kind_type) and _is_text(kind_type.value_type))
    )


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.cast(pa.string())


def _nulls(column: pa.ChunkedArray) -> np.ndarray:
    """Mask of null values (no kernel call for the common column without nulls)."""
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    return _numpy_bool(pc.is_null(column))


def _numpy_bool(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean arrow result as numpy, nulls counted as False."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _user_ids(table: pa.Table, uri: str, from_csv: bool, reasons: _Reasons) -> tuple[pa.ChunkedArray, IdKind | None]:
    column = table.column("user_id")
    kind_type = column.type
    if pa.types.is_null(kind_type):
        reasons.flag(np.ones(len(column), dtype=bool), "null user_id")
        return column, None
    if pa.types.is_integer(kind_type):
        reasons.flag(_nulls(column), "null user_id")
        return column.cast(pa.int64()), "int"
    if pa.types.is_floating(kind_type):
        # A float column of whole numbers is an integer column that went through pandas NaN.
        whole = pc.equal(pc.floor(column), column)
        reasons.flag(_numpy_bool(pc.is_null(column)), "null user_id")
        reasons.flag(~_numpy_bool(whole), "user_id is not a whole number")
        return pc.if_else(whole, column, pa.scalar(0.0)).cast(pa.int64(), safe=False), "int"
    if not _is_text(kind_type):
        raise DataContractError(f"{uri}: column 'user_id' has type {kind_type}; expected integer or text")
    text = pc.utf8_trim_whitespace(_as_text(column))
    empty = _numpy_bool(pc.is_null(text)) | _numpy_bool(pc.equal(text, ""))
    reasons.flag(empty, "null user_id")
    if from_csv:
        if empty.all():
            # A CSV without a single id says nothing about the type of the ids.
            return text, None
        canonical = _numpy_bool(pc.match_substring_regex(text, CANONICAL_INT))
        if canonical[~empty].all():
            # CSV has no types: ids written as canonical integers are integers, as in Parquet.
            return pc.if_else(pa.array(~empty), text, pa.scalar("0")).cast(pa.int64()), "int"
    return text, "string"


def _timestamps(column: pa.ChunkedArray, uri: str, name: str) -> tuple[pa.ChunkedArray, np.ndarray]:
    """``timestamp[us, UTC]`` values and a mask of values present but not parseable."""
    kind_type = column.type
    nothing = np.zeros(len(column), dtype=bool)
    if pa.types.is_null(kind_type):
        return column.cast(UTC_MICROS), nothing
    if pa.types.is_timestamp(kind_type):
        if kind_type.tz is None:
            # Naive timestamps are UTC (SPEC §1): attach the zone without shifting the values.
            column = pc.assume_timezone(column.cast(pa.timestamp("us"), safe=False), "UTC")
        return column.cast(UTC_MICROS, safe=False), nothing
    if pa.types.is_date(kind_type):
        return column.cast(pa.timestamp("us")).cast(UTC_MICROS), nothing
    if not _is_text(kind_type):
        raise DataContractError(f"{uri}: column {name!r} has type {kind_type}; expected a timestamp or ISO 8601 text")
    text = _as_text(column)
    # Fast paths (Arrow's ISO 8601 cast, ~10x pandas): every value with a zone, or none with one.
    # A column mixing both, or holding anything unparseable, goes through pandas row by row.
    try:
        return pc.cast(text, UTC_MICROS), np.zeros(len(text), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        return pc.assume_timezone(pc.cast(text, pa.timestamp("us")), "UTC"), np.zeros(len(text), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    parsed = pd.to_datetime(
        text.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get),
        utc=True,
        format="ISO8601",
        errors="coerce",
    )
    values = pa.chunked_array([pa.array(parsed.dt.as_unit("us"), type=UTC_MICROS)])
    broken = _numpy_bool(pc.is_valid(text)) & ~_numpy_bool(pc.is_valid(values))
    return values, broken


def _booleans(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Nullable booleans and a mask of values present but not a boolean."""
    kind_type = column.type
    if pa.types.is_boolean(kind_type) or pa.types.is_null(kind_type):
        return column.cast(pa.bool_()), np.zeros(len(column), dtype=bool)
    if pa.types.is_integer(kind_type) or pa.types.is_floating(kind_type):
        # 0/1 (a boolean that went through pandas NaN is a float column of 0.0/1.0/null).
        valid = pc.is_in(column, pa.array([0, 1], kind_type))
        broken = _numpy_bool(pc.is_valid(column)) & ~_numpy_bool(valid)
        return pc.if_else(valid, pc.equal(column, 1), pa.scalar(None, pa.bool_())), broken
    text = pc.utf8_lower(pc.utf8_trim_whitespace(_as_text(column)))
    is_true = pc.is_in(text, pa.array(TRUE_WORDS))
    is_false = pc.is_in(text, pa.array(FALSE_WORDS))
    known = pc.or_(is_true, is_false)
    broken = _numpy_bool(pc.is_valid(text)) & ~_numpy_bool(known)
    return pc.if_else(known, is_true, pa.scalar(None, pa.bool_())), broken


def _amounts(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray, np.ndarray]:
    """``float64`` values, a mask of text that is not a number, and a mask of negative values."""
    kind_type = column.type
    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal, pa.types.is_null)
    if any(check(kind_type) for check in numeric):
        values = column.cast(pa.float64())
        not_number = np.zeros(len(column), dtype=bool)
    else:
        text = _as_text(column)
        numbers = pd.to_numeric(
            text.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get), errors="coerce"
        ).astype("float64")
        values = pa.chunked_array([pa.array(numbers.to_numpy(), type=pa.float64(), from_pandas=True)])
        not_number = _numpy_bool(pc.is_valid(text)) & ~_numpy_bool(pc.is_valid(values))
    lowest = pc.min(values).as_py()
    negative = _numpy_bool(pc.less(values, 0.0)) if lowest is not None and lowest < 0 else np.zeros(len(values), bool)
    return values, not_number, negative


def _dictionary(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return column.cast(pa.dictionary(pa.int32(), pa.string()))
    return pc.dictionary_encode(column.cast(pa.string())).cast(pa.dictionary(pa.int32(), pa.string()))


def _quarantine_rows(table: pa.Table, reasons: _Reasons, uri: str) -> pa.Table | None:
    if reasons.good.all():
        return None
    bad = pa.array(~reasons.good)
    original = table.filter(bad)
    columns = {name: _as_text(original.column(name)) for name in original.column_names}
    columns["reason"] = pa.chunked_array([reasons.of_bad()])
    columns["source_file"] = pa.chunked_array([pa.array([uri] * original.num_rows, pa.string())])
    return pa.table(columns)


def _normalise(table: pa.Table, key: str, uri: str, kind: Kind, needs: DataNeeds | None) -> _FilePart:
    """Type every column per the contract and split good rows from quarantined ones."""
    if table.num_columns == 0 and table.num_rows == 0:
        return _FilePart(key, table, None, None)
    missing = [name for name in REQUIRED[kind] if name not in table.column_names]
    if missing:
        raise DataContractError(f"{uri}: missing required column {missing[0]!r}")
    original = table
    reasons = _Reasons(table.num_rows)
    columns: dict[str, pa.ChunkedArray] = {}
    user_ids, id_kind = _user_ids(table, uri, key.endswith(".csv"), reasons)
    columns["user_id"] = user_ids
    if kind == "events":
        ts, broken = _timestamps(table.column("ts"), uri, "ts")
        reasons.flag(_nulls(table.column("ts")), "null ts")
        reasons.flag(broken, "unparseable ts")
        columns["ts"] = ts
        event_type = table.column("event_type")
        if not _is_text(event_type.type) and not pa.types.is_null(event_type.type):
            raise DataContractError(f"{uri}: column 'event_type' has type {event_type.type}; expected text")
        event_type = _dictionary(event_type)
        reasons.flag(_nulls(event_type), "null event_type")
        columns["event_type"] = event_type
    timestamps = CUSTOMER_TIMESTAMPS if kind == "customers" else frozenset()
    booleans = CUSTOMER_BOOLEANS if kind == "customers" else EVENT_BOOLEANS
    numbers = EVENT_NUMBERS if kind == "events" else frozenset()
    for name in table.column_names:
        if name in columns or name == "dt":
            continue
        column = table.column(name)
        if name in timestamps:
            values, broken = _timestamps(column, uri, name)
            reasons.flag(broken, f"unparseable {name}")
            columns[name] = values
        elif name in booleans:
            values, broken = _booleans(column)
            reasons.flag(broken, f"{name} is not a boolean")
            columns[name] = values
        elif name in numbers:
            values, not_number, negative = _amounts(column)
            reasons.flag(not_number, f"{name} is not a number")
            reasons.flag(negative, f"negative {name}")
            columns[name] = values
        elif _is_text(column.type):
            # Events: every text property is a dictionary. Customers: dictionaries stay dictionaries
            # (pandas categoricals written to Parquet), plain text is decided in _to_pandas.
            keep_dictionary = kind == "events" or pa.types.is_dictionary(column.type)
            columns[name] = _dictionary(column) if keep_dictionary else _as_text(column)
        else:
            columns[name] = column
    typed = pa.table(columns)
    bad = _quarantine_rows(original, reasons, uri)
    good = typed.filter(pa.array(reasons.good)) if bad is not None else typed
    if kind == "events" and needs is not None:
        good = _in_scope(good, needs)
    return _FilePart(key, good, bad, id_kind)


def _in_scope(events: pa.Table, needs: DataNeeds) -> pa.Table:
    """Rows with ``earliest < ts <= until`` and a needed event type."""
    if events.num_rows == 0:
        return events
    ts = events.column("ts")
    until = pa.scalar(pd.Timestamp(needs.until).tz_convert("UTC"), UTC_MICROS)
    earliest = None if needs.earliest is None else pa.scalar(pd.Timestamp(needs.earliest).tz_convert("UTC"), UTC_MICROS)
    bounds = pc.min_max(ts)
    low, high = bounds["min"], bounds["max"]
    keep: Any = None
    # A partition entirely inside the window needs no per-row time test.
    if (
        not low.is_valid
        or pc.greater(high, until).as_py()
        or (earliest is not None and pc.less_equal(low, earliest).as_py())
    ):
        keep = pc.less_equal(ts, until)
        if earliest is not None:
            keep = pc.and_(keep, pc.greater(ts, earliest))
    if needs.event_types is not None:
        # Test the few dictionary values, then spread the answer over the rows by index.
        wanted = pa.array(sorted(needs.event_types), pa.string())
        chunks = []
        for chunk in events.column("event_type").chunks:
            chunks.append(pc.take(pc.is_in(chunk.dictionary.cast(pa.string()), wanted), chunk.indices))
        of_type = pa.chunked_array(chunks, pa.bool_())
        keep = of_type if keep is None else pc.and_(keep, of_type)
    if keep is None:
        return events
    return events.filter(keep)


# --- combining --------------------------------------------------------------------------------
def _check_id_kinds(parts: dict[Kind, list[_FilePart]], store: ObjectStore) -> IdKind | None:
    first: dict[IdKind, str] = {}
    for kind in ("customers", "events"):
        for part in parts[kind]:
            if part.id_kind is not None:
                first.setdefault(part.id_kind, part.key)
    if len(first) > 1:
        raise DataContractError(
            f"column 'user_id' is an integer in {store.uri(first['int'])} but text in "
            f"{store.uri(first['string'])}; use one type for user_id in every file"
        )
    return next(iter(first), None)


def _unify_types(tables: list[pa.Table]) -> list[pa.Table]:
    """Cast columns whose type differs between files: numbers promote, anything else becomes text."""
    seen: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for schema_field in table.schema:
            if not pa.types.is_null(schema_field.type):
                seen.setdefault(schema_field.name, set()).add(schema_field.type)
    conflicts = {name for name, types in seen.items() if len(types) > 1}
    if not conflicts:
        return tables
    unified = []
    for original in tables:
        table = original
        for name in conflicts & set(table.column_names):
            types = seen[name]
            if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
                target: pa.DataType = pa.float64()
            elif all(pa.types.is_dictionary(t) or _is_text(t) for t in types):
                target = pa.dictionary(pa.int32(), pa.string())
            else:
                target = pa.string()
            column = table.column(name)
            if pa.types.is_dictionary(target):
                column = _dictionary(column)
            else:
                column = _as_text(column) if target == pa.string() else column.cast(target)
            table = table.set_column(table.schema.get_field_index(name), name, column)
        unified.append(table)
    return unified


def _combine(parts: list[_FilePart], id_kind: IdKind | None, kind: Kind) -> pa.Table:
    tables = [part.good for part in parts if part.good.num_columns]
    id_type = pa.string() if id_kind == "string" else pa.int64()
    if not tables:
        base = {"user_id": pa.array([], id_type)}
        if kind == "events":
            base |= {"ts": pa.array([], UTC_MICROS), "event_type": pa.array([], pa.dictionary(pa.int32(), pa.string()))}
        return pa.table(base)
    tables = [
        table.set_column(0, "user_id", table.column("user_id").cast(id_type)) if id_kind is not None else table
        for table in tables
    ]
    combined = pa.concat_tables(_unify_types(tables), promote_options="permissive")
    return combined.unify_dictionaries()


def _low_cardinality(column: pa.ChunkedArray) -> bool:
    """Whether a text column repeats enough to be a dictionary, judged on a sample (no full hash)."""
    sample = column.slice(0, DICTIONARY_SAMPLE).combine_chunks()
    present = len(sample) - sample.null_count
    return present > 0 and pc.count_distinct(sample).as_py() <= DICTIONARY_MAX_SHARE * present


def _to_pandas(table: pa.Table, kind: Kind) -> pd.DataFrame:
    """Frames with the contract's dtypes; ``table`` is consumed (its buffers are freed as it converts)."""
    if kind == "customers":
        # High-cardinality text (email, phone) stays plain; repetitive text becomes a dictionary.
        for index, name in enumerate(table.column_names):
            column = table.column(name)
            if name != "user_id" and pa.types.is_string(column.type) and table.num_rows and _low_cardinality(column):
                table = table.set_column(index, name, _dictionary(column))
    mapping = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow"),
               pa.bool_(): pd.BooleanDtype()}  # fmt: skip
    frame = table.to_pandas(types_mapper=mapping.get, split_blocks=True, self_destruct=True)
    del table
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.DatetimeTZDtype) and dtype.unit != "us":
            frame[name] = frame[name].dt.as_unit("us")
    return frame


def _write_quarantine(store: ObjectStore, run_id: str, kind: Kind, parts: list[_FilePart]) -> str | None:
    bad = [part.bad for part in parts if part.bad is not None]
    if not bad:
        return None
    table = pa.concat_tables(bad, promote_options="default")
    sink = io.BytesIO()
    pq.write_table(table, sink)
    key = f"_quarantine/{run_id}/{kind}.parquet"
    store.put_bytes(key, sink.getvalue())
    return key


def load_dataset(
    store: ObjectStore,
    needs: DataNeeds,
    *,
    run_id: str,
    progress: Progress | None = None,
) -> Dataset:
    """Read what ``needs`` asks for from the data root ``store``; quarantine rows that break the contract.

    Parameters
    ----------
    store
        The data root (keys ``customers/...``, ``events/...``); quarantine files go under it.
    needs
        Event types, columns and time range (``funnelcast.segments.plan.data_needs``).
    run_id
        Names the quarantine folder ``_quarantine/<run_id>/``.
    progress
        Called with ``(files done, files total)`` after each file.

    Raises
    ------
    DataContractError
        No customer file, an unreadable file, a missing required column, or ``user_id`` typed
        differently between files.
    """
    customer_keys = list_data_keys(store, "customers")
    if not customer_keys:
        raise DataContractError(f"{store.uri('customers/')}: no customer files (*.parquet or *.csv)")
    event_keys = list_data_keys(store, "events", needs) if needs.earliest is not None else []
    total = len(customer_keys) + len(event_keys)
    customer_columns = None if needs.customer_columns is None else frozenset({"user_id", *needs.customer_columns})
    # "*" among the event columns asks for every column (tools and tests; rules never name "*").
    event_columns = (
        None if "*" in needs.event_columns else frozenset({"user_id", "ts", "event_type", *needs.event_columns})
    )
    parts: dict[Kind, list[_FilePart]] = {"customers": [], "events": []}
    files_read: list[str] = []
    bytes_read = 0
    plan: list[tuple[Kind, list[str], frozenset[str] | None]] = [
        ("customers", customer_keys, customer_columns),
        ("events", event_keys, event_columns),
    ]

    def read(job: tuple[Kind, str, frozenset[str] | None]) -> tuple[Kind, _FilePart, int]:
        kind, key, wanted = job
        table, size = _read_file(store, key, wanted, dictionary_text=kind == "events")
        return kind, _normalise(table, key, store.uri(key), kind, needs), size

    jobs = [(kind, key, wanted) for kind, keys, wanted in plan for key in keys]
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    # Files are read and checked in parallel (pyarrow releases the GIL); results come back in key
    # order, so "the last duplicate wins" and error messages do not depend on timing.
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, os.cpu_count() or 1)) as pool:
        for (kind, part, size), (_, key, _) in zip(pool.map(read, jobs), jobs, strict=True):
            parts[kind].append(part)
            files_read.append(store.uri(key))
            bytes_read += size
            if progress is not None:
                progress(len(files_read), total)
    timings["read_and_check"] = time.perf_counter() - tick
    tick = time.perf_counter()
    id_kind = _check_id_kinds(parts, store)
    quarantined: dict[str, int] = {}
    quarantine_files = []
    kinds: tuple[Kind, ...] = ("customers", "events")
    for kind in kinds:
        for part in parts[kind]:
            if part.bad is not None:
                for reason, count in pd.Series(part.bad.column("reason").to_pylist()).value_counts().items():
                    label = f"{kind}: {reason}"
                    quarantined[label] = quarantined.get(label, 0) + int(count)
        written = _write_quarantine(store, run_id, kind, parts[kind])
        if written is not None:
            quarantine_files.append(store.uri(written))
    timings["quarantine"] = time.perf_counter() - tick
    tick = time.perf_counter()
    # Each kind's parts are dropped once combined, so that converting to pandas frees the Arrow
    # buffers column by column instead of holding both copies.
    combined = _combine(parts.pop("customers"), id_kind, "customers")
    customers = _to_pandas(combined, "customers")
    del combined
    duplicated = customers["user_id"].duplicated(keep="last").to_numpy()
    duplicates = int(duplicated.sum())
    if duplicates:
        customers = customers.loc[~duplicated].reset_index(drop=True)
    timings["customers_frame"] = time.perf_counter() - tick
    tick = time.perf_counter()
    combined = _combine(parts.pop("events"), id_kind, "events")
    events = _to_pandas(combined, "events")
    del combined
    for frame in (customers, events):
        if id_kind == "string" or (id_kind is None and frame["user_id"].dtype == object):
            frame["user_id"] = frame["user_id"].astype(pd.StringDtype("pyarrow"))
    if "event_type" in events.columns and not isinstance(events["event_type"].dtype, pd.CategoricalDtype):
        events["event_type"] = events["event_type"].astype("category")
    timings["events_frame"] = time.perf_counter() - tick
    return Dataset(
        customers=customers,
        events=events,
        quarantined=quarantined,
        duplicates_dropped=duplicates,
        files_read=files_read,
        bytes_read=bytes_read,
        quarantine_files=quarantine_files,
        timings=timings,
    )


def needs_everything(until: datetime, earliest: datetime | None = None) -> DataNeeds:
    """``DataNeeds`` that reads every event type and column in ``(earliest, until]`` (tools, tests)."""
    from funnelcast.segments.plan import DataNeeds  # noqa: PLC0415 (kept out of import time)

    return DataNeeds(
        event_types=None,
        event_columns=frozenset({"*"}),
        customer_columns=None,
        earliest=earliest if earliest is not None else datetime(1970, 1, 1, tzinfo=until.tzinfo),
        until=until,
    )
