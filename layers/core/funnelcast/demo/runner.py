"""The demo run: embedded AWS from template.yaml, synthetic data, the example rules, a simulated clock.

Order of one run (:meth:`DemoRun.run`):

1. moto in process (``mock_aws``) or a ``ThreadedMotoServer`` on 127.0.0.1; every resource created
   from template.yaml by :func:`funnelcast.local.aws_env.create_resources`; the functions'
   environment installed in this process (restored afterwards).
2. Synthetic customers and events (:mod:`funnelcast.data.generate`): the history up to the start
   is uploaded at once; what happens later lands as hourly exports while the clock runs, like a
   customer's pipeline would deliver it.
3. ``segment_rules/`` uploaded under ``incoming/`` and activated through the activation service
   (which syncs one EventBridge Scheduler schedule per campaign).
4. The clock runs in ticks: what Scheduler fires (recompute, campaigns, waiting batches, report)
   is invoked in process; queues are drained into the senders and the feedback function as the
   event source mapping would; simulated customers react.
5. Files in ``--out`` (:mod:`funnelcast.demo.outputs`).

A stage whose code has not landed is reported as "not available yet" and nothing is faked in its
place.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from funnelcast.demo.clock import SimulatedClock
from funnelcast.demo.customers import (
    Reaction,
    SimulatedCustomers,
    push_status_record,
    ses_record,
    signed_function_url_event,
    vendor_report,
)
from funnelcast.demo.dispatcher import QueueDispatcher, QueueSource
from funnelcast.demo.requests import RequestCounter
from funnelcast.demo.scheduler import Firing, SimulatedScheduler
from funnelcast.errors import ConfigurationError, FunnelcastError

# 2026-12-01 00:00 in Asia/Seoul: simulated days line up with the example policy's local days.
DEFAULT_START = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
DEFAULT_TICK = timedelta(minutes=15)
EXPORT_EVERY = timedelta(hours=6)
FEED_DRAIN_EVERY = 100  # feedback messages published between two drains of the queues
EVENTS_PER_USER_PER_DAY = 1.2
LOCAL_ZONE = ZoneInfo("Asia/Seoul")
REGION = "ap-northeast-2"
NOT_AVAILABLE = "not available yet"
QUIET_FUNCTIONS = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "LOG_LEVEL": "WARNING",
}


class DemoError(FunnelcastError):
    """The demo cannot run (no repository checkout, a stage failed)."""


@dataclass(frozen=True)
class Faults:
    """Fault injection of the fault run (``--faults``)."""

    retryable_rate: float = 0.10
    crash_rate: float = 0.05
    duplicate_rate: float = 0.05
    poison_messages: int = 1


@dataclass(frozen=True)
class DemoConfig:
    users: int = 5_000
    days: int = 7
    history_days: int = 30
    seed: int = 7
    out: Path = Path("out/demo")
    server: bool = False
    faults: Faults | None = None
    start: datetime = DEFAULT_START
    tick: timedelta = DEFAULT_TICK
    recompute_expression: str | None = "rate(6 hours)"
    repo_root: Path | None = None


class ProgressSink(Protocol):
    """Where the run reports what it does (the command draws it with rich; tests stay silent)."""

    def message(self, text: str) -> None: ...
    def day_started(self, index: int, label: str, ticks: int) -> None: ...
    def ticked(self) -> None: ...
    def day_finished(self, summary: str) -> None: ...


class SilentProgress:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def day_started(self, index: int, label: str, ticks: int) -> None:
        del index, label, ticks

    def ticked(self) -> None:
        return None

    def day_finished(self, summary: str) -> None:
        self.messages.append(summary)


@dataclass
class StageLog:
    """What each stage did, or why it could not run (shown to the user and written to summary.json)."""

    status: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def available(self, stage: str) -> None:
        self.status.setdefault(stage, "ok")

    def unavailable(self, stage: str, why: str) -> None:
        self.status[stage] = f"{NOT_AVAILABLE} ({why})"

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value


def find_repo_root(start: Path | None = None) -> Path:
    """The checkout holding template.yaml and segment_rules/ (the demo runs from the repository).

    Looks upward from ``start`` (or the current directory), then from this file. A copy of the
    template shipped as package data would go stale, so there is none: fail clearly instead.
    """
    candidates = [start or Path.cwd(), Path(__file__).resolve()]
    for candidate in candidates:
        for folder in [candidate, *candidate.parents]:
            if (folder / "template.yaml").is_file() and (folder / "segment_rules").is_dir():
                return folder
    raise DemoError(
        "funnelcast demo runs from a repository checkout: no template.yaml with a segment_rules/ folder "
        f"beside it above {candidates[0]} or {Path(__file__).resolve().parent}"
    )


def _optional(module: str) -> ModuleType | None:
    """Import a module of another part of the project, ``None`` when that part has not landed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise


def load_function_module(repo_root: Path, name: str) -> ModuleType | None:
    """``functions/<name>/<name>.py`` as a module (``None`` when it does not exist yet)."""
    path = repo_root / "functions" / name / f"{name}.py"
    if not path.is_file():
        return None
    module_name = f"funnelcast_function_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the run and restore the previous environment afterwards."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _CapturedOutput(io.StringIO):
    """Where the functions' stdout (Powertools EMF metrics, logs) goes during the demo."""


@contextmanager
def _function_output(sink: list[str]) -> Iterator[None]:
    """Capture what a handler prints (EMF blobs would drown the progress bars); kept for functions.log."""
    buffer = _CapturedOutput()
    with redirect_stdout(buffer):
        yield
    if buffer.getvalue():
        sink.append(buffer.getvalue())


@dataclass
class OutboxRow:
    channel: str
    send_id: str
    user_id: int | str
    campaign_id: str
    purpose: str
    body: str
    subject: str | None
    title: str | None
    sent_at: datetime


class DemoRun:
    """One demo run; :meth:`run` returns the :class:`~funnelcast.demo.outputs.DemoResult`."""

    def __init__(self, config: DemoConfig, progress: ProgressSink | None = None) -> None:
        self.config = config
        self.progress = progress or SilentProgress()
        self.repo = config.repo_root or find_repo_root()
        self.clock = SimulatedClock(config.start - timedelta(minutes=5))
        self.stages = StageLog()
        self.counter = RequestCounter()
        self.customers = SimulatedCustomers(seed=config.seed)
        self.outbox: list[OutboxRow] = []
        self.log: list[dict[str, Any]] = []
        self.job_errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._purchases: list[dict[str, Any]] = []
        self._user_ids: dict[str, int | str] = {}
        self.timings: dict[str, float] = {}
        self.function_output: list[str] = []

    # ------------------------------------------------------------------ public

    def run(self) -> Any:
        from moto import mock_aws  # noqa: PLC0415

        from funnelcast.local.aws_env import FAKE_CREDENTIALS  # noqa: PLC0415

        started = time.perf_counter()
        base_env = {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, **QUIET_FUNCTIONS}
        with _environment(base_env), self.counter, warnings.catch_warnings():
            # Powertools warns on every handler call without metrics; the demo has metrics off.
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            os.environ.pop("AWS_PROFILE", None)
            os.environ.pop("AWS_ENDPOINT_URL", None)
            if self.config.server:
                import logging  # noqa: PLC0415

                from moto.server import ThreadedMotoServer  # noqa: PLC0415

                logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                server.start()
                host, port = server.get_host_and_port()
                endpoint = f"http://{host}:{port}"
                self.progress.message(f"moto server on {endpoint} (try: aws --endpoint-url {endpoint} sqs list-queues)")
                try:
                    return self._run_inside(endpoint, started)
                finally:
                    server.stop()
                    from funnelcast.local.aws_env import reset_caches  # noqa: PLC0415

                    reset_caches()
            try:
                with mock_aws():
                    return self._run_inside(None, started)
            finally:
                # Clients and settings cached inside moto must not outlive it (tests run on after).
                from funnelcast.local.aws_env import reset_caches  # noqa: PLC0415

                reset_caches()

    # ------------------------------------------------------------------ set-up

    def _run_inside(self, endpoint: str | None, started: float) -> Any:
        from funnelcast.local.aws_env import create_resources, reset_caches  # noqa: PLC0415

        parameters = {}
        if self.config.recompute_expression:
            parameters["RecomputeScheduleExpression"] = self.config.recompute_expression
        with RequestCounter.simulating():
            self.local = create_resources(
                self.repo / "template.yaml", region=REGION, endpoint_url=endpoint, parameters=parameters
            )
        os.environ.update(self.local.env)
        os.environ.update(QUIET_FUNCTIONS)  # the functions' logs and metrics would drown the progress bars
        reset_caches()
        for service in ("s3", "sqs", "dynamodb", "scheduler", "sns", "ssm"):
            RequestCounter.watch(self.local.client(service))
        self.settings = self.local.settings
        self.progress.message(
            f"AWS resources from template.yaml: {len(self.local.names)} (buckets, tables, queues with DLQs, "
            f"topic, schedule group) in {'moto server' if endpoint else 'in-process moto'}"
        )
        from funnelcast.storage import S3Store  # noqa: PLC0415

        self.rules_store = S3Store(self.settings.rules_bucket)
        self.data_root = S3Store(self.settings.data_bucket)
        self.input_store = S3Store(self.settings.data_bucket, self.settings.data_prefix)
        self.timings["setup"] = time.perf_counter() - started

        phase = time.perf_counter()
        self._generate_data()
        self.timings["data"] = time.perf_counter() - phase
        phase = time.perf_counter()
        self._activate_rules()
        self.timings["rules"] = time.perf_counter() - phase
        self._wire()
        if self.config.faults is not None:
            self._inject_poison()
        phase = time.perf_counter()
        self._run_clock()
        self.timings["simulation"] = time.perf_counter() - phase
        phase = time.perf_counter()
        from funnelcast.demo.outputs import write_outputs  # noqa: PLC0415

        result = write_outputs(self)
        self.timings["outputs"] = time.perf_counter() - phase
        self.timings["total"] = time.perf_counter() - started
        result.timings = dict(self.timings)
        from funnelcast.demo.outputs import write_summary  # noqa: PLC0415

        write_summary(self, result)
        return result

    def _generate_data(self) -> None:
        generate = _optional("funnelcast.data.generate")
        if generate is None:
            self.stages.unavailable("data", "funnelcast.data.generate has not landed")
            self.customers_frame = None
            self.organic = None
            return
        import pandas as pd  # noqa: PLC0415

        config = self.config
        total_days = config.history_days + config.days
        end = config.start + timedelta(days=config.days)
        events = int(config.users * EVENTS_PER_USER_PER_DAY * total_days)
        customers, organic = generate.generate(config.users, events, seed=config.seed, end=end, days=total_days)
        self.customers_frame = customers
        self._user_ids = {str(u): u for u in customers["user_id"].tolist()}
        ts = pd.to_datetime(organic["ts"], utc=True)
        start = pd.Timestamp(config.start)
        history = organic[ts <= start]
        self.organic = organic[ts > start].sort_values("ts", kind="stable").reset_index(drop=True)
        self._exported_until = config.start
        with RequestCounter.simulating():
            generate.write_dataset(self.input_store, self._customers_until(config.start), history)
        self.stages.available("data")
        self.stages.count("customers", len(customers))
        self.stages.count("history_events", len(history))
        self.progress.message(
            f"data: {len(customers):,} customers, {len(history):,} events over {config.history_days} days of history "
            f"(+{len(self.organic):,} to arrive in hourly exports during the run)"
        )

    def _customers_until(self, moment: datetime) -> Any:
        """Customers who had signed up by ``moment`` (a future sign-up is not in the export yet)."""
        import pandas as pd  # noqa: PLC0415

        frame = self.customers_frame
        assert frame is not None
        if "signup_at" not in frame:
            return frame
        signup = pd.to_datetime(frame["signup_at"], utc=True)
        return frame[signup.isna() | (signup <= pd.Timestamp(moment))].reset_index(drop=True)

    def _activate_rules(self) -> None:
        from funnelcast.activation import INCOMING_PREFIX, activate_rules  # noqa: PLC0415
        from funnelcast.scheduling import schedule_sync_callback  # noqa: PLC0415

        rules_dir = self.repo / "segment_rules"
        files = sorted(p for p in rules_dir.rglob("*.y*ml") if "fixtures" not in p.parts and "schema" not in p.parts)
        keys = []
        with RequestCounter.simulating():  # the marketer's upload, not the pipeline
            for path in files:
                key = f"{INCOMING_PREFIX}{path.relative_to(rules_dir).as_posix()}"
                self.rules_store.put_bytes(key, path.read_bytes())
                keys.append(key)
        synced: list[Any] = []
        sync = schedule_sync_callback(self.settings, clock=self.clock)

        def sync_and_keep(ruleset: Any) -> None:
            synced.append(sync(ruleset))

        # The upload of the last file is the S3 event that activates the complete set.
        result = activate_rules(self.rules_store, keys[-1], now=self.clock(), on_activated=[sync_and_keep])
        if not result.activated:
            raise DemoError("the example rules were rejected:\n" + "\n".join(result.problems))
        self.rules_hash = result.rules_hash
        self.stages.available("rules")
        schedules = synced[0].created if synced else []
        self.progress.message(
            f"rules: {len(files)} files uploaded to incoming/, active set {(result.rules_hash or '')[:12]}"
            f" with {result.segments} segments and {len(result.campaigns)} campaigns "
            f"({', '.join(result.campaigns)}); {len(schedules)} campaign schedules created"
        )

    # ------------------------------------------------------------------ wiring

    def _wire(self) -> None:
        """Dependencies of every function the clock will invoke, with the simulated clock."""
        from funnelcast.activation import load_active_ruleset  # noqa: PLC0415

        self.ruleset = load_active_ruleset(self.rules_store)
        self.scheduler = SimulatedScheduler(self.local.client("scheduler"), self.settings.schedule_group)
        faults = self.config.faults
        self.dispatcher = QueueDispatcher(
            self.local.client("sqs"),
            self.clock,
            region=REGION,
            duplicate_rate=faults.duplicate_rate if faults else 0.0,
            seed=self.config.seed,
        )
        self.counter.observers.append(self.dispatcher.observe)
        self.planner = self._planner_dependencies()
        self.senders = self._sender_dependencies()
        self.feedback_handler = self._feedback_handler()
        visibility = self._visibility_timeouts()
        for function in self.local.functions.values():
            for source in function.sqs_sources:
                handler = self._queue_handler(function.logical_id, function.environment.get("CHANNEL", ""))
                if handler is None:
                    continue
                self.dispatcher.add(
                    QueueSource(
                        function=function.logical_id,
                        queue=source.queue,
                        queue_url=source.queue_url,
                        queue_arn=self.local.arns[source.queue],
                        batch_size=source.batch_size,
                        visibility_timeout=visibility.get(source.queue_url, 30),
                        report_batch_item_failures=source.report_batch_item_failures,
                        handler=handler,
                    )
                )

    def _visibility_timeouts(self) -> dict[str, int]:
        timeouts: dict[str, int] = {}
        sqs = self.local.client("sqs")
        with RequestCounter.simulating():
            for function in self.local.functions.values():
                for source in function.sqs_sources:
                    attributes = sqs.get_queue_attributes(
                        QueueUrl=source.queue_url, AttributeNames=["VisibilityTimeout"]
                    )
                    timeouts[source.queue_url] = int(attributes["Attributes"]["VisibilityTimeout"])
        return timeouts

    def _log(self, component: str) -> Callable[[str, dict[str, Any]], None]:
        def log(message: str, extra: dict[str, Any]) -> None:
            entry = {"at": self.clock().isoformat(), "component": component, "message": message, **extra}
            with self._lock:
                self.log.append(entry)
                error = extra.get("error")
                if error:
                    for key in ("message_id", "job_id"):
                        if extra.get(key):
                            self.job_errors[str(extra[key])] = str(error)
                            if key == "message_id":
                                self.dispatcher.note_error(str(extra[key]), str(error))

        return log

    def _planner_dependencies(self) -> Any:
        planning = _optional("funnelcast.planning.planner")
        if planning is None or _optional("funnelcast.caps.store") is None:
            self.stages.unavailable("planner", "funnelcast.planning / funnelcast.caps have not landed")
            return None
        from funnelcast.settings import Settings  # noqa: PLC0415

        settings = Settings.from_env(self.local.function_env("PlanCampaignFunction"))
        deps = planning.PlannerDependencies.from_settings(settings)
        deps.clock = self.clock
        deps.log = self._log("planner")
        # One process with moto: parallel reads only add thread switches here.
        deps.read_threads = 1
        module = load_function_module(self.repo, "plan_campaign")
        if module is None:
            self.stages.unavailable("planner", "functions/plan_campaign has not landed")
            return None
        module._deps["deps"] = deps  # the container's cached dependencies, with the simulated clock
        self.planner_handler = module.lambda_handler
        self.stages.available("planner")
        return deps

    def _sender_dependencies(self) -> dict[str, Any]:
        from funnelcast.sending.fakes import FakeProvider  # noqa: PLC0415
        from funnelcast.sending.wiring import SqsJobQueues, dependencies_from_settings  # noqa: PLC0415
        from funnelcast.settings import Settings  # noqa: PLC0415

        if _optional("funnelcast.caps.store") is None:
            self.stages.unavailable("senders", "funnelcast.caps has not landed")
            return {}
        from funnelcast.demo.dispatcher import DelayedSends  # noqa: PLC0415

        faults = self.config.faults
        deps_by_channel: dict[str, Any] = {}
        self.delayed: list[DelayedSends] = []
        for function in self.local.functions.values():
            channel = function.environment.get("CHANNEL")
            if not channel:
                continue
            settings = Settings.from_env(self.local.function_env(function.logical_id))
            deps = dependencies_from_settings(settings)
            fake = FakeProvider(
                channel,
                retryable_rate=faults.retryable_rate if faults else 0.0,
                seed=self.config.seed + len(deps_by_channel),
                after_accept=self._accepted,
            )
            delayed = DelayedSends(SqsJobQueues(settings), self.clock)
            self.delayed.append(delayed)
            deps.providers = {channel: fake}
            deps.concurrency = 1  # one process with moto: parallel sends only add thread switches here
            deps.clock = self.clock
            deps.queues = delayed
            deps.log = self._log(f"sender:{channel}")
            deps_by_channel[channel] = deps
        self.stages.available("senders")
        return deps_by_channel

    def _accepted(self, entry: Any) -> None:
        """The fake provider accepted a message: the customer has it now (then maybe the worker dies)."""
        now = self.clock()
        with self._lock:
            self.outbox.append(
                OutboxRow(
                    entry.channel,
                    entry.send_id,
                    entry.user_id,
                    entry.campaign_id,
                    entry.purpose,
                    entry.body,
                    entry.subject,
                    entry.title,
                    now,
                )
            )
            self.customers.react(
                send_id=entry.send_id,
                channel=entry.channel,
                user_id=entry.user_id,
                campaign_id=entry.campaign_id,
                purpose=entry.purpose,
                at=now,
            )
            # Drawn from the send id, not a shared RNG: the same sends crash whatever the thread order.
            crash = (
                self.config.faults is not None
                and _draw(self.config.seed, entry.send_id) < self.config.faults.crash_rate
            )
        if crash:
            from funnelcast.sending.fakes import SimulatedCrashError  # noqa: PLC0415

            self.stages.count("injected_crashes")
            raise SimulatedCrashError(f"worker died after the provider accepted {entry.send_id}")

    def _feedback_handler(self) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
        module = load_function_module(self.repo, "ingest_feedback")
        if module is None:
            self.stages.unavailable("feedback", "functions/ingest_feedback has not landed")
            return None
        handler = getattr(module, "lambda_handler", None)
        if handler is None:
            self.stages.unavailable("feedback", "functions/ingest_feedback has no lambda_handler")
            return None
        from funnelcast.feedback.service import FeedbackDependencies  # noqa: PLC0415
        from funnelcast.settings import Settings  # noqa: PLC0415

        deps = FeedbackDependencies.from_settings(Settings.from_env(self.local.function_env("IngestFeedbackFunction")))
        deps.clock = self.clock
        deps.log = self._log("feedback")
        deps.warn = self._log("feedback")
        module._deps["deps"] = deps
        self.stages.available("feedback")
        context = _LambdaContext("IngestFeedbackFunction", self.local.functions["IngestFeedbackFunction"].name)

        def invoke(event: dict[str, Any]) -> dict[str, Any]:
            with _function_output(self.function_output):
                result: dict[str, Any] = handler(event, context)
            return result

        return invoke

    def _queue_handler(self, logical_id: str, channel: str) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
        if channel:
            deps = self.senders.get(channel)
            if deps is None:
                return None
            from funnelcast.sending.batch import handle_batch  # noqa: PLC0415

            return lambda event: handle_batch(event, None, deps, channel)
        if logical_id == "IngestFeedbackFunction":
            return self.feedback_handler
        return None

    def _inject_poison(self) -> None:
        """A job body no sender can parse, on the SMS queue: it must end in the DLQ with a reason."""
        faults = self.config.faults
        assert faults is not None
        sqs = self.local.client("sqs")
        with RequestCounter.simulating():
            for number in range(faults.poison_messages):
                sqs.send_message(QueueUrl=self.settings.queue_url("sms"), MessageBody=f'{{"poison": {number}, "v": "x"')
        self.stages.count("poison_messages", faults.poison_messages)

    # ------------------------------------------------------------------ the clock

    def _run_clock(self) -> None:
        config = self.config
        ticks_per_day = int(timedelta(days=1) / config.tick)
        end = config.start + timedelta(days=config.days)
        self.clock.set(config.start)
        # The first recompute after deployment is on demand: campaigns need a snapshot from the start.
        self._recompute(config.start)
        moment = config.start
        for day in range(config.days):
            label = (config.start + timedelta(days=day)).astimezone(LOCAL_ZONE).strftime("%a %Y-%m-%d")
            self.progress.day_started(day, label, ticks_per_day)
            before = self._day_counters()
            for _ in range(ticks_per_day):
                self._tick(moment, min(moment + config.tick, end))
                moment += config.tick
                self.progress.ticked()
            after = self._day_counters()
            self.progress.day_finished(
                f"{label}: " + ", ".join(f"{name} {after[name] - before.get(name, 0):,}" for name in after)
            )
        self._tail(end)

    def _day_counters(self) -> dict[str, int]:
        return {
            "runs": self.stages.counts.get("planner_runs", 0),
            "sent": len(self.outbox),
            "reactions": sum(self.customers.counts.values()),
            "recomputes": self.stages.counts.get("recomputes", 0),
        }

    def _tick(self, start: datetime, end: datetime) -> None:
        with RequestCounter.simulating():
            firings = self.scheduler.due(start, end)
        firings.sort(
            key=lambda f: (f.at, 0 if self._target(f) == "RecomputeSegmentsFunction" else 1, f.definition.name)
        )
        for firing in firings:
            self._advance(firing.at)
            self._fire(firing)
            self._drain()
        self._advance(end)
        self._export_data(end)
        self._drain()

    def _advance(self, moment: datetime) -> None:
        """Move the clock to ``moment``, handing over in time order what became due on the way
        (delayed jobs, messages visible again) and the customers' reactions up to each step."""
        while True:
            due = [d.next_due() for d in getattr(self, "delayed", [])]
            due.append(self.dispatcher.next_visible_at() if hasattr(self, "dispatcher") else None)
            pending = [t for t in due if t is not None and t <= moment]
            if not pending:
                break
            self.clock.set(max(min(pending), self.clock()))
            for delayed in getattr(self, "delayed", []):
                delayed.release_due()
            self._feed_back(self.customers.due(self.clock()))
            self._drain()
        self.clock.set(max(moment, self.clock()))
        self._feed_back(self.customers.due(self.clock()))

    def _drain(self) -> None:
        if hasattr(self, "dispatcher"):
            self.dispatcher.drain()

    def _drain_every(self, published: int) -> None:
        """Drain while a burst of feedback is being filled in, as the event source mapping polls all the
        time: moto's ReceiveMessage scans the whole queue per message, so a deep queue costs O(n^2)."""
        if published % FEED_DRAIN_EVERY == 0:
            self._drain()

    def _target(self, firing: Firing) -> str:
        arn = firing.definition.target_arn
        for logical_id, candidate in self.local.arns.items():
            if candidate == arn:
                return logical_id
        return arn

    def _fire(self, firing: Firing) -> None:
        target = self._target(firing)
        try:
            if target == "RecomputeSegmentsFunction":
                self._recompute(firing.at, firing.payload)
            elif target == "PlanCampaignFunction":
                self._plan(firing.payload)
            elif target == "BuildReportFunction":
                self._report(firing.at)
            else:
                self.stages.errors.append(f"{firing.definition.name}: target {target} is not a known function")
        finally:
            with RequestCounter.simulating():
                self.scheduler.completed(firing)

    def _recompute(self, at: datetime, payload: dict[str, Any] | None = None) -> None:
        """RecomputeSegmentsFunction with the Scheduler's input (or an on-demand ``{"at": ...}``)."""
        if self.stages.status.get("data") != "ok":
            self.stages.unavailable("segments", "no data")
            return
        handler = self._recompute_handler()
        if handler is None:
            return
        started = time.perf_counter()
        event = payload if payload is not None else {"source": "manual", "at": at.isoformat()}
        try:
            with _function_output(self.function_output):
                handler(event, _LambdaContext("RecomputeSegmentsFunction", "recompute"))
        except Exception as exc:
            self.stages.errors.append(f"recompute at {at.isoformat()}: {type(exc).__name__}: {exc}")
            self.stages.status["segments"] = f"failed: {type(exc).__name__}: {exc}"
            return
        self.timings["recompute_seconds"] = self.timings.get("recompute_seconds", 0.0) + time.perf_counter() - started
        self.stages.available("segments")
        self.stages.count("recomputes")

    def _recompute_handler(self) -> Callable[[dict[str, Any], Any], Any] | None:
        if hasattr(self, "_recompute_lambda"):
            return self._recompute_lambda
        module = load_function_module(self.repo, "recompute_segments")
        if module is None or _optional("funnelcast.data.load") is None:
            self.stages.unavailable("segments", "functions/recompute_segments or funnelcast.data.load has not landed")
            return None
        from funnelcast.segments.service import RecomputeDependencies  # noqa: PLC0415
        from funnelcast.settings import Settings  # noqa: PLC0415

        settings = Settings.from_env(self.local.function_env("RecomputeSegmentsFunction"))
        module._deps["deps"] = RecomputeDependencies.from_settings(settings, clock=self.clock)
        self._recompute_lambda: Callable[[dict[str, Any], Any], Any] = module.lambda_handler
        return self._recompute_lambda

    def _report(self, at: datetime) -> None:
        """BuildReportFunction's work (KPIs into ``reports/<day>/``, the daily suppression rebuild) at ``at``.

        The handler reads the wall clock when the Scheduler input has no ``now``; the service takes it.
        """
        scheduled = _optional("funnelcast.reporting.scheduled")
        if scheduled is None:
            self.stages.unavailable("report", "funnelcast.reporting.scheduled has not landed")
            return
        from funnelcast.settings import Settings  # noqa: PLC0415

        deps = scheduled.ReportDependencies.from_settings(
            Settings.from_env(self.local.function_env("BuildReportFunction"))
        )
        deps.log = self._log("report")
        started = time.perf_counter()
        try:
            with _function_output(self.function_output):
                scheduled.build_scheduled_report(deps, now=at)
        except Exception as exc:
            self.stages.errors.append(f"daily report at {at.isoformat()}: {type(exc).__name__}: {exc}")
            return
        self.timings["report_seconds"] = self.timings.get("report_seconds", 0.0) + time.perf_counter() - started
        self.stages.available("report")
        self.stages.count("daily_reports")

    def _plan(self, payload: dict[str, Any]) -> None:
        if self.planner is None:
            self.stages.count("planner_firings_unavailable")
            return
        started = time.perf_counter()
        context = _LambdaContext("PlanCampaignFunction", "plan-campaign")
        try:
            with _function_output(self.function_output):
                answer = self.planner_handler(payload, context)
            if payload.get("action") == "release_waiting":
                self.stages.count("waiting_releases")
            else:
                status = str(answer.get("status"))
                self.stages.count(f"planner_{status}")
                if status == "done":
                    self.stages.count("planner_runs")
                elif status == "failed":
                    self.stages.errors.append(f"{answer.get('run_id')}: {answer.get('error')}")
        except Exception as exc:
            # The Lambda would fail and Scheduler would retry; the demo records it and goes on.
            self.stages.errors.append(f"planner {payload}: {type(exc).__name__}: {exc}")
            self.stages.count("planner_errors")
        self.timings["planner_seconds"] = self.timings.get("planner_seconds", 0.0) + time.perf_counter() - started

    # ------------------------------------------------------------------ customers and data

    def _feed_back(self, reactions: list[Reaction]) -> None:
        """Reactions reach the feedback function the way each channel reports them; purchases go to data."""
        if not reactions:
            return
        for reaction in reactions:
            if reaction.kind == "purchase":
                self._purchases.append(
                    {
                        "user_id": self._user_ids.get(reaction.user_id, reaction.user_id),
                        "ts": reaction.at,
                        "event_type": "purchase",
                        "amount": reaction.amount,
                        "campaign_id": reaction.campaign_id,
                    }
                )
        if self.feedback_handler is None:
            self.stages.count("feedback_events_not_delivered", sum(r.kind != "purchase" for r in reactions))
            return
        email = [r for r in reactions if r.channel == "email" and r.kind != "purchase"]
        push = [r for r in reactions if r.channel == "push" and r.kind == "delivered"]
        vendor = [r for r in reactions if r.channel not in {"email", "push"} and r.kind != "purchase"]
        sns, sqs = self.local.client("sns"), self.local.client("sqs")
        topic = self.local.names["SesEventsTopic"]
        for start in range(0, len(email), 10):
            entries = [
                {"Id": str(i), "Message": json.dumps(ses_record(r, self.settings.ses_from_address))}
                for i, r in enumerate(email[start : start + 10])
            ]
            with RequestCounter.simulating():  # SES, SNS and the vendors do this, not the pipeline
                sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
            self._drain_every(start + len(entries))
        for start in range(0, len(push), 10):
            entries = [
                {"Id": str(i), "MessageBody": json.dumps(push_status_record(r))}
                for i, r in enumerate(push[start : start + 10])
            ]
            with RequestCounter.simulating():
                sqs.send_message_batch(QueueUrl=self.settings.feedback_queue_url, Entries=entries)
            self._drain_every(start + len(entries))
        if vendor:
            secret = self.local.secrets.get(self.settings.feedback_secret_parameter, "")
            body = {"reports": [vendor_report(r) for r in vendor]}
            try:
                self.feedback_handler(signed_function_url_event(body, secret, "feedback"))
            except Exception as exc:
                self.stages.errors.append(f"feedback function URL: {type(exc).__name__}: {exc}")
        self.stages.count("feedback_events", len(email) + len(push) + len(vendor))

    def _export_data(self, upto: datetime) -> None:
        """Every ``EXPORT_EVERY``: the customers' new events (organic + purchases) land in the bucket."""
        if self.organic is None or upto - self._exported_until < EXPORT_EVERY:
            return
        import pandas as pd  # noqa: PLC0415
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        ts = pd.to_datetime(self.organic["ts"], utc=True)
        window = (ts > pd.Timestamp(self._exported_until)) & (ts <= pd.Timestamp(upto))
        fresh = self.organic[window]
        parts = [fresh]
        if self._purchases:
            purchases = pd.DataFrame(self._purchases)
            purchases["ts"] = pd.to_datetime(purchases["ts"], utc=True).astype("datetime64[us, UTC]")
            purchases = purchases.drop(columns=["campaign_id"])
            purchases["user_id"] = purchases["user_id"].astype(self.organic["user_id"].dtype)
            parts.append(purchases)
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else fresh
        self._purchases = []
        with RequestCounter.simulating():
            if len(frame):
                days = pd.to_datetime(frame["ts"], utc=True).dt.strftime("%Y-%m-%d")
                for day, rows in frame.groupby(days, sort=True):
                    buffer = io.BytesIO()
                    pq.write_table(pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False), buffer)
                    key = f"events/dt={day}/export-{upto.astimezone(UTC):%Y%m%dT%H%MZ}.parquet"
                    self.input_store.put_bytes(key, buffer.getvalue())
                self.stages.count("exported_events", len(frame))
            signups = self.customers_frame is not None and "signup_at" in self.customers_frame
            if signups:
                signup = pd.to_datetime(self.customers_frame["signup_at"], utc=True)  # type: ignore[index]
                joined = ((signup > pd.Timestamp(self._exported_until)) & (signup <= pd.Timestamp(upto))).any()
                if joined:
                    buffer = io.BytesIO()
                    table = pa.Table.from_pandas(self._customers_until(upto), preserve_index=False)
                    pq.write_table(table, buffer)
                    self.input_store.put_bytes("customers/part-0.parquet", buffer.getvalue())
        self._exported_until = upto

    def _tail(self, end: datetime) -> None:
        """After the last day: let retries, redrives and delayed jobs finish (no new firings)."""
        limit = end + timedelta(hours=2)
        while True:
            candidates = [d.next_due() for d in getattr(self, "delayed", [])]
            candidates.append(self.dispatcher.next_visible_at())
            upcoming = [t for t in candidates if t is not None]
            if not upcoming or min(upcoming) > limit:
                break
            self._advance(min(upcoming))
            self._drain()
        self.ended_at = self.clock()


def _draw(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from ``(seed, key)``: reproducible fault injection."""
    digest = hashlib.sha256(f"{seed}\x1fcrash\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class _LambdaContext:
    """The parts of a Lambda context Powertools reads."""

    def __init__(self, logical_id: str, name: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = f"demo-{logical_id}"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "demo"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def check_config(config: DemoConfig) -> None:
    if config.users < 1 or config.days < 1:
        raise ConfigurationError(f"--users and --days must be positive, got {config.users} and {config.days}")
    if timedelta(days=1) % config.tick:
        raise ConfigurationError(f"the tick ({config.tick}) must divide a day")
