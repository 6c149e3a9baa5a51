"""``funnelcast generate`` writes a loadable data root and rejects bad arguments clearly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from funnelcast.cli import main
from funnelcast.data.load import load_dataset, needs_everything
from funnelcast.storage import LocalStore


def test_generate_writes_partitions_that_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # When the command runs with a fixed end and a 3-day window
    code = main(["generate", "--users", "50", "--events", "700", "--seed", "4", "--days", "3",
                 "--end", "2026-11-23T10:00:00+09:00", "--out", str(tmp_path)])  # fmt: skip
    # Then it succeeds, says what it wrote, and the partitions cover the window's UTC days
    assert code == 0
    assert "50 customers and 700 events" in capsys.readouterr().out
    days = sorted(path.name for path in (tmp_path / "events").iterdir())
    assert days[0] >= "dt=2026-11-20"
    assert days[-1] <= "dt=2026-11-23"
    dataset = load_dataset(LocalStore(tmp_path), needs_everything(datetime(2026, 11, 23, 1, tzinfo=UTC)), run_id="r")
    assert len(dataset.events) == 700


def test_generate_csv_format(tmp_path: Path) -> None:
    assert main(["generate", "--users", "20", "--events", "100", "--format", "csv", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "customers" / "part-0.csv").read_text(encoding="utf-8").startswith('"user_id"')


@pytest.mark.parametrize(
    "arguments",
    [["--users", "-3", "--events", "10"], ["--users", "x", "--events", "10"], ["--users", "3", "--events", "10",
     "--end", "yesterday-ish"], ["--users", "3", "--events", "10", "--format", "xlsx"]],
)  # fmt: skip
def test_generate_rejects_bad_arguments(
    tmp_path: Path, arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a bad argument, Then argparse exits with a message naming it and nothing is written
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *arguments, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_generate_refuses_zero_users(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--users", "0", "--events", "10", "--out", str(tmp_path / "out")]) == 1
    assert "--users must be at least 1" in capsys.readouterr().err
