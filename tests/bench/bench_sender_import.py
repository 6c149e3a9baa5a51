"""Sender benchmarks (``make bench``): cold import of the handler and provider round trips of a 100-recipient job.

Prints figures and ratios; asserts nothing about time (benchmarks are not tests).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

REPO = Path(__file__).resolve().parents[2]
IMPORT_BUDGET_MS = 150.0
PROVIDER_LATENCY_S = 0.02


def cold_import_ms(runs: int = 5) -> tuple[float, list[str]]:
    """Median cumulative ``-X importtime`` of ``send_message`` in fresh interpreters, and heavy modules seen."""
    code = (
        "import sys; sys.path.insert(0, 'functions/send_message'); import send_message; "
        "print([m for m in ('pandas', 'numpy', 'pyarrow', 'boto3', 'liquid') if m in sys.modules])"
    )
    samples, heavy = [], []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=REPO, check=True
        )
        match = re.search(r"^import time:\s+\d+ \|\s+(\d+) \| send_message$", done.stderr, re.MULTILINE)
        assert match, done.stderr[-500:]
        samples.append(int(match.group(1)) / 1000)
        heavy = eval_list(done.stdout)
    return statistics.median(samples), heavy


def first_invocation_import_ms(runs: int = 3) -> float:
    """What the first invocation imports on top (Powertools, pydantic models, worker): the honest cold start."""
    code = (
        "import time; t = time.perf_counter(); "
        "import aws_lambda_powertools, funnelcast.sending.batch, funnelcast.sending.logging, "
        "funnelcast.sending.wiring; "
        "from aws_lambda_powertools.utilities.batch import BatchProcessor; "
        "print((time.perf_counter() - t) * 1000)"
    )
    samples = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout)
        for _ in range(runs)
    ]
    return statistics.median(samples)


def eval_list(text: str) -> list[str]:
    return re.findall(r"'([^']+)'", text)


def round_trips_of_100(concurrency: int) -> tuple[float, int]:
    """Wall time of a 100-recipient job against a provider that takes 20 ms per call, in round trips."""
    sys.path.insert(0, str(REPO / "tests" / "unit" / "sending"))
    from test_sending_worker import FakeCaps, FakeQueues, FakeRuleSets, job, recipient

    from funnelcast.sending.fakes import FakeProvider
    from funnelcast.sending.state import MemorySendStates
    from funnelcast.sending.worker import SenderDependencies, process_job
    from funnelcast.storage import LocalStore

    fake = FakeProvider("kakao_brand")

    class Slow:
        channel = "kakao_brand"

        def send(self, request: Any) -> str:
            time.sleep(PROVIDER_LATENCY_S)
            return fake.send(request)

    with TemporaryDirectory() as tmp:
        deps = SenderDependencies(
            rulesets=FakeRuleSets(),
            caps=FakeCaps(),
            states=MemorySendStates(),
            queues=FakeQueues(),
            deliveries=LocalStore(Path(tmp)),
            providers={"kakao_brand": Slow()},
            clock=lambda: datetime(2026, 12, 1, 3, 0, tzinfo=UTC),
            concurrency=concurrency,
        )
        the_job = job([recipient(2 * i) for i in range(1, 101)])
        process_job(job([recipient(1000)], job_id="warm"), deps)  # compile the template once
        started = time.perf_counter()
        outcome = process_job(the_job, deps)
        elapsed = time.perf_counter() - started
    return elapsed / PROVIDER_LATENCY_S, len(outcome.records)


def main() -> None:
    median_ms, heavy = cold_import_ms()
    print(f"sender cold import (python -X importtime, median of 5): {median_ms:.1f} ms")
    print(f"  budget {IMPORT_BUDGET_MS:.0f} ms -> ratio {median_ms / IMPORT_BUDGET_MS:.2f}; heavy modules: {heavy}")
    print(
        f"first-invocation imports (Powertools, models, worker; liquid and boto3 excluded): "
        f"{first_invocation_import_ms():.1f} ms"
    )
    for concurrency in (1, 10):
        trips, sent = round_trips_of_100(concurrency)
        print(f"100-recipient job, PROVIDER_CONCURRENCY={concurrency}: {trips:.1f} provider round trips ({sent} sent)")


if __name__ == "__main__":
    main()
