"""The report command end to end on a hand-made run directory, and the HTML drawn by headless Chromium."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from funnelcast.commands import report as report_command

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def main(argv: list[str]) -> int:
    """Run the report command alone (the CLI builds every command's parser, some owned by others)."""
    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    return report_command.run(parser.parse_args(argv[1:]))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    decisions, deliveries, feedback, events = [], [], [], []
    for user in range(40):
        day = T0 + timedelta(days=user % 3)
        outcome = ["queued", "queued", "capped", "waiting", "suppressed", "holdout", "queued", "holdout"][user % 8]
        send_id = f"s{user}" if outcome == "queued" else None
        variant = None if outcome == "holdout" else ("a" if user % 2 else "b")
        decisions.append(
            {
                "run_id": "r",
                "campaign_id": "재구매_유도",
                "user_id": user,
                "variant_id": variant,
                "outcome": outcome,
                "reason": "",
                "decided_at": day,
                "send_id": send_id,
                "channel": None if outcome == "holdout" else "kakao_alimtalk",
            }
        )
        if send_id:
            deliveries.append(
                {
                    "send_id": send_id,
                    "run_id": "r",
                    "campaign_id": "재구매_유도",
                    "user_id": user,
                    "variant_id": variant,
                    "channel": "kakao_alimtalk",
                    "status": "sent",
                    "sent_at": day,
                }
            )
            feedback.append(
                {
                    "event_id": f"e{user}",
                    "send_id": send_id,
                    "type": "delivered",
                    "ts": day,
                    "channel": "kakao_alimtalk",
                    "user_id": str(user),
                }
            )
        if user % 3 == 0:
            events.append({"user_id": user, "event": "purchase", "ts": day + timedelta(hours=5), "amount": 12000})
    pd.DataFrame(decisions).to_parquet(tmp_path / "decisions.parquet")
    pd.DataFrame(deliveries).to_parquet(tmp_path / "deliveries.parquet")
    pd.DataFrame(feedback).to_parquet(tmp_path / "feedback.parquet")
    pd.DataFrame(events).to_parquet(tmp_path / "events.parquet")
    return tmp_path


def test_report_writes_kpis_and_html(run_dir: Path) -> None:
    # Given a run directory, When `funnelcast report RUN_DIR --html`, Then kpis.parquet and the page exist
    html = run_dir / "report.html"
    assert main(["report", str(run_dir), "--html", str(html)]) == 0
    kpis = pd.read_parquet(run_dir / "kpis.parquet")
    assert kpis["sent"].sum() == 15
    assert kpis["holdout"].sum() == 10
    page = html.read_text(encoding="utf-8")
    assert "재구매_유도" in page
    assert "<script" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_report_names_the_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a run directory without deliveries.parquet, When reported, Then exit 1 naming the file
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "decisions.parquet")
    assert main(["report", str(tmp_path)]) == 1
    assert "decisions.parquet: missing column" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_chromium_draws_the_charts(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # Given the rendered report
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium missing under CI: run tests/tools/ensure_chromium.sh")
        pytest.skip("chromium not installed (tests/tools/ensure_chromium.sh installs it)")
    html = run_dir / "report.html"
    assert main(["report", str(run_dir), "--html", str(html)]) == 0
    profile = tmp_path_factory.mktemp("chromium-profile")
    shot = run_dir / "report.png"
    # When headless Chromium loads it offline
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1200,1400",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then each chart is an SVG with drawn bars and the screenshot exists
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    for section in ("funnel", "lift", "daily"):
        part = dom.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
        assert "<svg" in part, section
        assert 'class="bar"' in part, section
    assert shot.exists()
    assert shot.stat().st_size > 10_000
    if os.environ.get("FUNNELCAST_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["FUNNELCAST_KEEP_SCREENSHOT"])


def test_lift_chart_colours_only_intervals_clear_of_zero() -> None:
    # Given one variant whose whole 95% interval is above zero and one whose interval spans zero
    from funnelcast.reporting.html import DOWN, FLAT, UP, lift_svg, summary_cards

    base = {
        "campaign_id": "winback",
        "treated_rate": 0.2,
        "holdout_rate": 0.1,
        "p_value": 0.01,
        "treated_n": 900,
        "holdout_n": 100,
    }
    kpis = pd.DataFrame(
        [
            {**base, "variant_id": "a", "lift": 0.10, "lift_ci_low": 0.02, "lift_ci_high": 0.18},
            {**base, "variant_id": "b", "lift": 0.01, "lift_ci_low": -0.05, "lift_ci_high": 0.07},
            # a holdout of 3 people: whatever the interval says, it is not a finding
            {**base, "variant_id": "c", "lift": -0.3, "lift_ci_low": -0.5, "lift_ci_high": -0.1, "holdout_n": 3},
        ]
    )
    svg = lift_svg(kpis)
    rows = svg.split("<circle")[1:]
    # Then the first is drawn green (an improvement), the second grey (undecided), none red
    assert f"fill='{UP}'" in rows[0]
    assert f"fill='{FLAT}'" in rows[1]
    assert f"fill='{FLAT}'" in rows[2]
    assert "small sample" in rows[2]
    assert DOWN not in svg
    # And the headline names the significant one
    kpis = kpis.assign(sent=10, delivered=10, clicked=1, converted=2, revenue=1000.0)
    assert "winback / a: +10.0%p" in summary_cards(kpis)


def test_events_without_an_event_column_are_named(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given events.parquet without event_type (nor event), When reported, Then exit 1 naming file and column
    pd.DataFrame({"user_id": [1], "ts": [T0]}).to_parquet(run_dir / "events.parquet")
    assert main(["report", str(run_dir)]) == 1
    assert "events.parquet: missing column event_type" in capsys.readouterr().err
