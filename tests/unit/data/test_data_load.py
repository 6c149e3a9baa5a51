"""The loader against the data contract: every bad-input case of issue #3, pruning, projection, S3."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from funnelcast.data.load import list_data_keys, load_dataset, needs_everything
from funnelcast.errors import DataContractError
from funnelcast.segments.plan import DataNeeds
from funnelcast.storage import LocalStore

T = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CUSTOMERS_CSV = "user_id,name,consent_sms\n1,김민준,true\n2,이서연,false\n3,박지호,\n"


def _parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue()


@pytest.fixture
def root(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


@pytest.fixture
def put(root: LocalStore) -> Callable[[str, str | bytes], None]:
    def write(key: str, body: str | bytes) -> None:
        root.put_bytes(key, body.encode("utf-8") if isinstance(body, str) else body)

    return write


def _needs(**changes: Any) -> DataNeeds:
    """Every type and column over (T - 30d, T], with ``changes`` applied."""
    return dataclasses.replace(needs_everything(T, T - timedelta(days=30)), **changes)


def test_corrupt_rows_are_quarantined_with_a_reason_and_the_run_goes_on(
    root: LocalStore, put: Callable[[str, str | bytes], None]
) -> None:
    # Given events with a null user_id, a bad and a missing timestamp, negative and text amounts,
    # a bad boolean, a null event type and an event type no rule knows
    put("customers/c.csv", CUSTOMERS_CSV)
    put(
        "events/e.csv",
        "user_id,ts,event_type,amount,is_promo\n"
        "1,2026-11-20T10:00:00Z,purchase,12000,true\n"
        ",2026-11-20T10:00:00Z,purchase,5000,false\n"
        "2,yesterday,purchase,5000,false\n"
        "2,,app_open,,\n"
        "3,2026-11-20T11:00:00Z,purchase,-300,false\n"
        "3,2026-11-20T12:00:00Z,purchase,abc,false\n"
        "3,2026-11-20T13:00:00Z,purchase,10,maybe\n"
        "1,2026-11-20T14:00:00Z,,1,\n"
        "2,2026-11-21T09:00:00Z,wishlist_add,,\n",
    )
    # When it is loaded
    dataset = load_dataset(root, _needs(), run_id="run-1")
    # Then only the good rows remain (the unknown event type is fine) ...
    assert sorted(dataset.events["event_type"].astype(str)) == ["purchase", "wishlist_add"]
    # ... each bad row is counted under its reason ...
    assert dataset.quarantined == {
        "events: null user_id": 1,
        "events: unparseable ts": 1,
        "events: null ts": 1,
        "events: negative amount": 1,
        "events: amount is not a number": 1,
        "events: is_promo is not a boolean": 1,
        "events: null event_type": 1,
    }
    # ... and written, as text with its reason and file, under _quarantine/<run_id>/
    quarantine = pd.read_parquet(root.root / "_quarantine" / "run-1" / "events.parquet")
    assert len(quarantine) == 7
    assert set(quarantine.columns) == {"user_id", "ts", "event_type", "amount", "is_promo", "reason", "source_file"}
    assert quarantine.loc[quarantine["reason"] == "unparseable ts", "ts"].tolist() == ["yesterday"]
    assert quarantine.loc[quarantine["reason"] == "amount is not a number", "amount"].tolist() == ["abc"]
    assert set(quarantine["source_file"]) == {root.uri("events/e.csv")}
    assert dataset.quarantine_files == [root.uri("_quarantine/run-1/events.parquet")]


def test_quarantined_parquet_rows_keep_their_original_values(
    root: LocalStore, put: Callable[[str, str | bytes], None]
) -> None:
    # Given a Parquet events file with a null user_id and a negative amount
    put("customers/c.parquet", _parquet(pd.DataFrame({"user_id": ["a", "b"]})))
    events = pd.DataFrame(
        {
            "user_id": ["a", None, "b"],
            "ts": pd.to_datetime(["2026-11-20T10:00:00Z"] * 3, utc=True),
            "event_type": ["purchase"] * 3,
            "amount": [100.0, 5.0, -1.5],
        }
    )
    put("events/dt=2026-11-20/part-0.parquet", _parquet(events))
    dataset = load_dataset(root, _needs(), run_id="r2")
    assert dataset.events["user_id"].tolist() == ["a"]
    quarantine = pd.read_parquet(root.root / "_quarantine" / "r2" / "events.parquet")
    assert sorted(quarantine["reason"]) == ["negative amount", "null user_id"]
    assert quarantine.loc[quarantine["reason"] == "negative amount", "amount"].tolist() == ["-1.5"]


def test_bad_customer_rows_are_quarantined(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given customers with an empty id, an unparseable sign-up date and a consent that is not a boolean
    put(
        "customers/c.csv",
        "user_id,signup_at,consent_email\n1,2026-11-01,Y\n,2026-11-01,N\n2,soon,yes\n3,2026-11-02T09:00:00+09:00,perhaps\n"
        "4,,\n",
    )
    dataset = load_dataset(root, _needs(), run_id="r")
    # Then the good customers stay, with booleans parsed from Y/N/yes and a missing sign-up as NaT
    assert dataset.customers["user_id"].tolist() == [1, 4]
    assert dataset.customers["consent_email"].tolist() == [True, pd.NA]
    assert pd.isna(dataset.customers["signup_at"].iloc[1])
    assert dataset.quarantined == {
        "customers: null user_id": 1,
        "customers: unparseable signup_at": 1,
        "customers: consent_email is not a boolean": 1,
    }
    assert (root.root / "_quarantine" / "r" / "customers.parquet").is_file()


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("zero-byte.csv", b""),
        ("header-only.csv", b"user_id,ts,event_type\n"),
        ("no-rows.parquet", _parquet(pd.DataFrame({"user_id": pd.Series([], dtype="int64"),
                                                   "ts": pd.Series([], dtype="datetime64[us, UTC]"),
                                                   "event_type": pd.Series([], dtype="string")}))),
    ],
)  # fmt: skip
def test_empty_files_are_fine(
    root: LocalStore, put: Callable[[str, str | bytes], None], name: str, body: bytes
) -> None:
    # Given an empty events file beside a normal one
    put("customers/c.csv", CUSTOMERS_CSV)
    put("events/e.csv", "user_id,ts,event_type\n1,2026-11-20T10:00:00Z,app_open\n")
    put(f"events/{name}", body)
    # When loaded, Then it adds zero rows and no error
    dataset = load_dataset(root, _needs(), run_id="r")
    assert len(dataset.events) == 1
    assert dataset.quarantined == {}
    assert root.uri(f"events/{name}") in dataset.files_read


def test_empty_customer_file_beside_others(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    put("customers/a.csv", CUSTOMERS_CSV)
    put("customers/b.csv", b"")
    assert load_dataset(root, _needs(), run_id="r").customers["user_id"].tolist() == [1, 2, 3]


def test_extra_event_columns_are_kept_and_typed(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given events with properties no rule names, in only one of two files
    put("customers/c.csv", CUSTOMERS_CSV)
    put("events/a.csv", "user_id,ts,event_type,coupon_code,page\n1,2026-11-20T10:00:00Z,app_open,WELCOME,3\n")
    put("events/b.csv", "user_id,ts,event_type\n2,2026-11-20T11:00:00Z,app_open\n")
    dataset = load_dataset(root, _needs(), run_id="r")
    # Then both rows load; the extra text column is a category, missing values are null
    events = dataset.events.sort_values("ts").reset_index(drop=True)
    assert isinstance(events["coupon_code"].dtype, pd.CategoricalDtype)
    assert events["coupon_code"].tolist()[0] == "WELCOME"
    assert pd.isna(events["coupon_code"].iloc[1])


def test_csv_with_bom_and_korean_text(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given CSV files saved by Excel: UTF-8 with a byte-order mark, Korean names and categories
    put("customers/c.csv", "\ufeffuser_id,name,region\nu1,김민준,서울\nu2,이서연,부산\n".encode())
    put("events/e.csv", "\ufeffuser_id,ts,event_type,category\nu1,2026-11-20T10:00:00Z,product_view,뷰티\n".encode())
    dataset = load_dataset(root, _needs(), run_id="r")
    # Then the first column is still called user_id and the Korean text is intact
    assert dataset.customers["name"].tolist() == ["김민준", "이서연"]
    assert dataset.events["category"].astype(str).tolist() == ["뷰티"]
    assert dataset.customers["user_id"].dtype == pd.StringDtype("pyarrow")
    assert dataset.events["user_id"].dtype == pd.StringDtype("pyarrow")


def test_duplicate_customers_keep_the_last_row(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given a customer file repeating user 1, and a later file repeating user 2
    put("customers/a.csv", "user_id,name\n1,old\n2,first\n1,new\n")
    put("customers/b.csv", "user_id,name\n2,second\n3,only\n")
    dataset = load_dataset(root, _needs(), run_id="r")
    # Then each user appears once with its last row, and the others are counted
    names = dict(zip(dataset.customers["user_id"], dataset.customers["name"].astype(str), strict=True))
    assert names == {1: "new", 2: "second", 3: "only"}
    assert dataset.duplicates_dropped == 2


def test_timestamps_with_and_without_zones(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given one instant written four ways: offset, Z, naive (UTC) and a Parquet naive timestamp
    put("customers/c.csv", CUSTOMERS_CSV)
    put(
        "events/e.csv",
        "user_id,ts,event_type\n1,2026-11-23T10:00:00+09:00,a\n2,2026-11-23T01:00:00Z,b\n3,2026-11-23 01:00:00,c\n",
    )
    naive = pd.DataFrame({"user_id": [1], "ts": [pd.Timestamp("2026-11-23T01:00:00")], "event_type": ["d"]})
    put("events/n.parquet", _parquet(naive))
    tokyo = pd.DataFrame(
        {"user_id": [2], "ts": [pd.Timestamp("2026-11-23T10:00:00", tz="Asia/Tokyo")], "event_type": ["e"]}
    )
    put("events/t.parquet", _parquet(tokyo))
    dataset = load_dataset(root, _needs(), run_id="r")
    # Then every row is the same UTC instant, in microseconds
    assert str(dataset.events["ts"].dtype) == "datetime64[us, UTC]"
    assert set(dataset.events["ts"]) == {pd.Timestamp("2026-11-23T01:00:00Z")}
    assert len(dataset.events) == 5


def test_int_user_id_in_one_file_and_text_in_another_is_an_error(
    root: LocalStore, put: Callable[[str, str | bytes], None]
) -> None:
    # Given integer ids for customers and text ids in one events file
    put("customers/c.csv", CUSTOMERS_CSV)
    put("events/e.csv", "user_id,ts,event_type\nu1,2026-11-20T10:00:00Z,app_open\n")
    # Then loading fails, naming both files and the column
    with pytest.raises(DataContractError) as error:
        load_dataset(root, _needs(), run_id="r")
    message = str(error.value)
    assert "user_id" in message
    assert root.uri("customers/c.csv") in message
    assert root.uri("events/e.csv") in message


def test_missing_required_column_names_file_and_column(
    root: LocalStore, put: Callable[[str, str | bytes], None]
) -> None:
    put("customers/c.csv", CUSTOMERS_CSV)
    put("events/e.csv", "user_id,event_type\n1,app_open\n")
    with pytest.raises(DataContractError, match=r"events/e\.csv: missing required column 'ts'"):
        load_dataset(root, _needs(), run_id="r")


def test_customers_without_user_id(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    put("customers/c.csv", "id,name\n1,x\n")
    with pytest.raises(DataContractError, match=r"customers/c\.csv: missing required column 'user_id'"):
        load_dataset(root, _needs(), run_id="r")


def test_unreadable_file_names_the_file(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    put("customers/c.csv", CUSTOMERS_CSV)
    put("events/dt=2026-11-20/part-0.parquet", b"PAR1 this is not parquet at all")
    with pytest.raises(DataContractError, match=r"dt=2026-11-20/part-0\.parquet: unreadable file"):
        load_dataset(root, _needs(), run_id="r")


def test_wrong_user_id_type_names_file_and_column(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    put("customers/c.parquet", _parquet(pd.DataFrame({"user_id": [True, False]})))
    with pytest.raises(DataContractError, match=r"c\.parquet: column 'user_id' has type bool"):
        load_dataset(root, _needs(), run_id="r")


def test_no_customer_files(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    put("events/e.csv", "user_id,ts,event_type\n1,2026-11-20T10:00:00Z,app_open\n")
    with pytest.raises(DataContractError, match="no customer files"):
        load_dataset(root, _needs(), run_id="r")


def test_partitions_outside_the_window_are_not_read(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given daily partitions from well before the window to after T, plus bookkeeping files
    put("customers/c.csv", CUSTOMERS_CSV)
    for day in ("2026-10-01", "2026-10-23", "2026-11-10", "2026-11-23", "2026-11-25"):
        put(f"events/dt={day}/part-0.csv", f"user_id,ts,event_type\n1,{day}T11:00:00Z,app_open\n")
    put("events/_SUCCESS", b"")
    put("events/dt=2026-11-10/.part-0.csv.crc", b"junk")
    put("_quarantine/old/events.parquet", b"junk")
    needs = _needs(earliest=T - timedelta(days=14))
    # When loaded, Then only the partitions that can hold (T-14d, T] are read ...
    read = [uri.rsplit("events/", 1)[1] for uri in load_dataset(root, needs, run_id="r").files_read if "events/" in uri]
    assert read == ["dt=2026-11-10/part-0.csv", "dt=2026-11-23/part-0.csv"]
    # ... and the dt column is not added to the frame
    assert "dt" not in load_dataset(root, needs, run_id="r").events.columns
    all_days = ("2026-10-01", "2026-10-23", "2026-11-10", "2026-11-23", "2026-11-25")
    assert list_data_keys(root, "events") == [f"events/dt={day}/part-0.csv" for day in all_days]


def test_window_is_half_open_and_types_filtered(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given events exactly at T-7d, just after it, exactly at T and just after T
    put("customers/c.csv", CUSTOMERS_CSV)
    put(
        "events/e.csv",
        "user_id,ts,event_type\n"
        "1,2026-11-16T12:00:00Z,purchase\n"
        "1,2026-11-16T12:00:01Z,purchase\n"
        "1,2026-11-23T12:00:00Z,purchase\n"
        "1,2026-11-23T12:00:01Z,purchase\n"
        "1,2026-11-20T12:00:00Z,app_open\n",
    )
    needs = _needs(earliest=T - timedelta(days=7), event_types=frozenset({"purchase"}))
    events = load_dataset(root, needs, run_id="r").events
    # Then (T-7d, T] keeps the middle two, and other types are not loaded
    assert events["ts"].tolist() == [pd.Timestamp("2026-11-16T12:00:01Z"), pd.Timestamp("2026-11-23T12:00:00Z")]


def test_no_events_needed_reads_no_event_file(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    put("customers/c.csv", CUSTOMERS_CSV)
    put("events/e.csv", "user_id,ts,event_type\n1,2026-11-20T10:00:00Z,app_open\n")
    dataset = load_dataset(root, _needs(earliest=None), run_id="r")
    assert dataset.files_read == [root.uri("customers/c.csv")]
    assert list(dataset.events.columns) == ["user_id", "ts", "event_type"]
    assert dataset.events["user_id"].dtype == "int64"


def test_only_needed_columns_are_read(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given Parquet files with more columns than the rules need
    customers = pd.DataFrame({"user_id": [1, 2], "name": ["가", "나"], "secret_score": [0.1, 0.2]})
    put("customers/c.parquet", _parquet(customers))
    events = pd.DataFrame(
        {
            "user_id": [1, 2],
            "ts": pd.to_datetime(["2026-11-20T10:00:00Z"] * 2, utc=True),
            "event_type": ["purchase", "purchase"],
            "amount": [1000.0, 2000.0],
            "referrer": ["x", "y"],
        }
    )
    put("events/e.parquet", _parquet(events))
    needs = _needs(event_columns=frozenset({"amount"}), customer_columns=frozenset({"name"}))
    dataset = load_dataset(root, needs, run_id="r")
    # Then only those columns (plus the required ones) are in the frames
    assert list(dataset.customers.columns) == ["user_id", "name"]
    assert list(dataset.events.columns) == ["user_id", "ts", "event_type", "amount"]


def test_progress_reports_every_file(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    put("customers/c.csv", CUSTOMERS_CSV)
    put("events/dt=2026-11-20/part-0.csv", "user_id,ts,event_type\n1,2026-11-20T10:00:00Z,app_open\n")
    put("events/dt=2026-11-21/part-0.csv", "user_id,ts,event_type\n1,2026-11-21T10:00:00Z,app_open\n")
    calls: list[tuple[int, int]] = []
    load_dataset(root, _needs(), run_id="r", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_leading_zero_ids_stay_text(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given CSV ids that only look numeric ("007"), Then they are compared as given: text
    put("customers/c.csv", "user_id\n007\n8\n")
    put("events/e.csv", "user_id,ts,event_type\n007,2026-11-20T10:00:00Z,app_open\n")
    dataset = load_dataset(root, _needs(), run_id="r")
    assert dataset.customers["user_id"].tolist() == ["007", "8"]
    assert dataset.events["user_id"].tolist() == ["007"]


class MemoryStore:
    """A bucket in memory: exercises the bytes path the loader takes for S3."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get_bytes(self, key: str) -> bytes:
        return self.objects[key]

    def put_bytes(self, key: str, body: bytes, *, if_absent: bool = False) -> None:
        self.objects[key] = body

    def list_keys(self, prefix: str = "") -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def uri(self, key: str = "") -> str:
        return f"memory://{key}"

    def child(self, prefix: str) -> MemoryStore:
        raise NotImplementedError


def test_bytes_path_reads_plain_text_parquet_as_categories() -> None:
    # Given a non-local store holding Parquet written by another tool: plain text, no pandas metadata
    store = MemoryStore()
    customers = pa.table({"user_id": pa.array(["a", "b"]), "name": pa.array(["가", "나"])})
    events = pa.table(
        {
            "user_id": pa.array(["a", "b", "a"]),
            "ts": pa.array([datetime(2026, 11, 20, tzinfo=UTC)] * 3, pa.timestamp("ms", tz="Asia/Seoul")),
            "event_type": pa.array(["product_view"] * 3),
            "category": pa.array(["뷰티", "식품", "뷰티"]),
        }
    )
    for key, table in (("customers/c.parquet", customers), ("events/e.parquet", events)):
        sink = io.BytesIO()
        pq.write_table(table, sink, store_schema=False)
        store.put_bytes(key, sink.getvalue())
    # When loaded, Then text properties are categories, ids text, timestamps UTC microseconds
    dataset = load_dataset(store, _needs(), run_id="r")
    assert isinstance(dataset.events["category"].dtype, pd.CategoricalDtype)
    assert isinstance(dataset.events["event_type"].dtype, pd.CategoricalDtype)
    assert dataset.events["user_id"].dtype == pd.StringDtype("pyarrow")
    assert str(dataset.events["ts"].dtype) == "datetime64[us, UTC]"
    assert dataset.bytes_read == sum(len(body) for body in store.objects.values())


def test_booleans_that_went_through_pandas_nan(root: LocalStore, put: Callable[[str, str | bytes], None]) -> None:
    # Given is_promo as a float column (1.0 / 0.0 / NaN), as pandas writes a boolean with gaps
    put("customers/c.csv", CUSTOMERS_CSV)
    events = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "ts": pd.to_datetime(["2026-11-20T10:00:00Z"] * 3, utc=True),
            "event_type": ["purchase", "purchase", "app_open"],
            "is_promo": [1.0, 0.0, float("nan")],
        }
    )
    put("events/e.parquet", _parquet(events))
    dataset = load_dataset(root, _needs(), run_id="r")
    # Then it is a nullable boolean and nothing is quarantined
    assert dataset.quarantined == {}
    assert dataset.events.sort_values("user_id")["is_promo"].tolist() == [True, False, pd.NA]


@pytest.mark.parametrize(
    "stamps",
    [
        ["2026-11-23T10:00:00+09:00", "2026-11-23T02:00:00+01:00"],  # every value with a zone
        ["2026-11-23 01:00:00", "2026-11-23T01:00:00.000000"],  # none with a zone: UTC
        ["2026-11-23T01:00:00Z", "2026-11-23 01:00:00.000000Z"],  # Z, as pyarrow's CSV writer puts it
    ],
)
def test_uniform_text_timestamps_take_the_fast_path(
    root: LocalStore, put: Callable[[str, str | bytes], None], stamps: list[str]
) -> None:
    # Given a CSV whose ts column is consistently written one way
    put("customers/c.csv", CUSTOMERS_CSV)
    put("events/e.csv", "user_id,ts,event_type\n" + "".join(f"1,{stamp},a\n" for stamp in stamps))
    events = load_dataset(root, _needs(), run_id="r").events
    # Then every row is the same UTC instant
    assert events["ts"].tolist() == [pd.Timestamp("2026-11-23T01:00:00Z")] * 2
