"""``funnelcast segments``: files in --out, the terminal summary, changes between runs, clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from funnelcast.cli import main
from funnelcast.segments.summary import segment_overlaps

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "segments" / "cart_abandoners.json"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = sorted({key for row in rows for key in row}, key=lambda c: (c != "user_id", c))
    with path.open("w", encoding="utf-8-sig", newline="") as handle:  # BOM + Korean text, as exports come
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def data_root(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """Given the cart_abandoners fixture written as CSV files in a data root."""
    case = json.loads(FIXTURE.read_text(encoding="utf-8"))
    root = tmp_path / "data"
    _write_csv(root / "customers" / "customers.csv", case["customers"])
    _write_csv(root / "events" / "events.csv", case["events"])
    return root, case


def test_writes_membership_manifest_and_prints_the_summary(
    data_root: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, case = data_root
    out = tmp_path / "out"
    # When the command runs with the example rules at the fixture's T
    code = main(
        ["segments", "--rules", str(ROOT / "segment_rules"), "--data", str(root), "--at", case["at"], "--out", str(out)]
    )
    # Then it succeeds and membership.parquet holds exactly the expected cart abandoners
    assert code == 0
    membership = pd.read_parquet(out / "membership.parquet")
    assert list(membership.columns) == ["user_id", "segment_id"]
    members = membership[membership["segment_id"] == "cart_abandoners"]["user_id"]
    assert sorted(members) == sorted(case["expected_members"])
    # And the manifest has counts, the rules hash and (no) quarantined rows
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["cart_abandoners"] == len(case["expected_members"])
    assert manifest["quarantined"] == {}
    assert len(manifest["rules_hash"]) == 16
    assert manifest["customers"] == len(case["customers"])
    # And the terminal shows the table with sizes, shares and entered counts, and the overlaps
    printed = capsys.readouterr().out
    share = 100 * len(case["expected_members"]) / len(case["customers"])
    assert "cart_abandoners" in printed
    assert f"{share:.1f}%" in printed
    assert f"+{len(case['expected_members'])}" in printed
    assert "row ∩ column" in printed


def test_second_run_reports_entered_and_exited(
    data_root: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a first run at T, then a run 30 hours later in the same --out
    root, case = data_root
    out = tmp_path / "out"
    args = ["segments", "--rules", str(ROOT / "segment_rules"), "--data", str(root), "--out", str(out), "--quiet"]
    assert main([*args, "--at", case["at"]]) == 0
    later = (pd.Timestamp(case["at"]) + pd.Timedelta(hours=30)).isoformat()
    assert main([*args, "--at", later]) == 0
    # Then the abandoners of T left the segment (their carts are older than 48h) and count as exited
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    change = manifest["changes"]["cart_abandoners"]
    assert manifest["counts"]["cart_abandoners"] == len(case["expected_members"]) + change["entered"] - change["exited"]
    assert change["exited"] >= 1
    # And --quiet printed one line per run and no tables
    printed = capsys.readouterr().out
    assert len(printed.strip().splitlines()) == 2
    assert "┏" not in printed


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an empty data root / When the command runs / Then exit 2 naming the customers folder
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "segments",
            "--rules",
            str(ROOT / "segment_rules"),
            "--data",
            str(tmp_path / "empty"),
            "--at",
            "2026-12-01T00:00",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "customers" in capsys.readouterr().err


def test_bad_reference_time_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given --at that is no date-time / Then argparse exits 2 quoting it
    with pytest.raises(SystemExit) as exited:
        main(["segments", "--rules", "x", "--data", "y", "--at", "yesterday", "--out", str(tmp_path)])
    assert exited.value.code == 2
    assert "yesterday" in capsys.readouterr().err


def test_overlaps_count_members_in_both() -> None:
    # Given a in {1,2,3}, b in {2,3,4}, c in {} / Then the overlap matrix counts shared members
    membership = pd.DataFrame(
        {"user_id": [1, 2, 3, 2, 3, 4], "segment_id": pd.Categorical(["a"] * 3 + ["b"] * 3, categories=["a", "b", "c"])}
    )
    shared = segment_overlaps(membership, ["a", "b", "c"])
    assert shared.loc["a", "b"] == shared.loc["b", "a"] == 2
    assert shared.loc["a", "a"] == 3
    assert shared.loc["c", "c"] == 0
    assert shared.loc["a", "c"] == 0
