"""The loader reads the data bucket (moto S3) through the same code path as a local folder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from funnelcast.data.generate import generate, write_dataset
from funnelcast.data.load import load_dataset
from funnelcast.local.aws_env import LocalAws
from funnelcast.rules.ruleset import load_ruleset
from funnelcast.segments.engine import compute_segments
from funnelcast.segments.plan import data_needs
from funnelcast.storage import LocalStore, open_store

ROOT = Path(__file__).resolve().parents[2]
END = datetime(2026, 12, 1, tzinfo=UTC)


def test_s3_and_local_roots_load_the_same_frames(aws: LocalAws, tmp_path: Path) -> None:
    # Given the same generated data under the data bucket's prefix and in a local folder
    settings = aws.settings
    s3_root = open_store(f"s3://{settings.data_bucket}/{settings.data_prefix}", aws.client("s3"))
    local_root = LocalStore(tmp_path)
    customers, events = generate(400, 6_000, seed=9, end=END, days=20)
    write_dataset(s3_root, customers, events, "parquet")
    write_dataset(local_root, customers, events, "parquet")
    # And a corrupt row in one extra S3 file
    s3_root.put_bytes("events/dt=2026-11-30/extra.csv", b"user_id,ts,event_type\n,2026-11-30T01:00:00Z,app_open\n")
    ruleset = load_ruleset([str(ROOT / "segment_rules")]).ruleset
    needs = data_needs(ruleset, END)
    # When both are loaded and evaluated
    from_s3 = load_dataset(s3_root, needs, run_id="run-s3")
    from_disk = load_dataset(local_root, needs, run_id="run-local")
    # Then the frames and the segment counts are the same
    pd.testing.assert_frame_equal(from_s3.customers, from_disk.customers)
    pd.testing.assert_frame_equal(
        from_s3.events.sort_values(["ts", "user_id"]).reset_index(drop=True),
        from_disk.events.sort_values(["ts", "user_id"]).reset_index(drop=True),
        check_categorical=False,
    )
    assert compute_segments(ruleset, from_s3, END).counts == compute_segments(ruleset, from_disk, END).counts
    # And the S3 run read real bytes and wrote its quarantine beside the data, in the bucket
    assert from_s3.bytes_read > 0
    assert from_s3.quarantined == {"events: null user_id": 1}
    assert s3_root.exists("_quarantine/run-s3/events.parquet")
    key = f"{settings.data_prefix}_quarantine/run-s3/events.parquet"
    assert aws.client("s3").head_object(Bucket=settings.data_bucket, Key=key)["ContentLength"] > 0
