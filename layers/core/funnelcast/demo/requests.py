"""Count AWS requests per service and operation with botocore event hooks.

One module-level hook, ``before-call``, is added to botocore's built-in handlers (so every session
created afterwards, including those of ``funnelcast.aws.clients`` and Powertools, carries it) and to
clients created earlier on request (:meth:`RequestCounter.watch`). It forwards to the counter that
is active, so a second demo in the same process (the e2e tests) counts from zero.

Requests are attributed to a *caller*: ``pipeline`` (what the deployed functions would pay for:
planner, senders, feedback, segments) by default, or ``simulator`` inside
:meth:`RequestCounter.simulating` (what the demo does in place of AWS itself: reading schedules
like EventBridge Scheduler, polling queues like the Lambda event source mapping, uploading data
like the customer's exports). Worker threads of the senders see the default, ``pipeline``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

PIPELINE = "pipeline"
SIMULATOR = "simulator"
_HOOK_ID = "funnelcast-demo-request-counter"
_CALLER: ContextVar[str] = ContextVar("funnelcast_demo_caller", default=PIPELINE)
_ACTIVE: list[RequestCounter] = []
_INSTALLED = threading.Event()
CallObserver = Callable[[str, str, Mapping[str, Any]], None]


def _on_before_call(event_name: str = "", context: dict[str, Any] | None = None, **_: Any) -> None:
    """botocore ``before-call.<service>.<Operation>``: one API call (retries are not new calls)."""
    if context is not None:
        # A client created after the global install and then watched carries the hook twice.
        if context.get(_HOOK_ID):
            return
        context[_HOOK_ID] = True
    if _ACTIVE:
        _ACTIVE[-1].record(event_name)


def _on_parameters(event_name: str = "", params: Mapping[str, Any] | None = None, **_: Any) -> None:
    """botocore ``before-parameter-build``: the call's parameters, for observers (e.g. which queue got a message)."""
    if _ACTIVE and _ACTIVE[-1].observers:
        parts = event_name.split(".")
        if len(parts) >= 3:
            for observer in _ACTIVE[-1].observers:
                observer(parts[1], parts[2], params or {})


def _install_globally() -> None:
    if _INSTALLED.is_set():
        return
    from botocore.handlers import BUILTIN_HANDLERS  # noqa: PLC0415

    BUILTIN_HANDLERS.append(("before-call", _on_before_call))
    BUILTIN_HANDLERS.append(("before-parameter-build", _on_parameters))
    _INSTALLED.set()


class RequestCounter:
    """AWS API calls by ``(caller, service, operation)`` while active (a context manager)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.observers: list[CallObserver] = []
        self._lock = threading.Lock()

    def __enter__(self) -> RequestCounter:
        _install_globally()
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    @staticmethod
    def watch(boto_client: Any) -> None:
        """Count a client created before the counter was installed (idempotent per client)."""
        _install_globally()
        boto_client.meta.events.register("before-call", _on_before_call, unique_id=_HOOK_ID)
        boto_client.meta.events.register("before-parameter-build", _on_parameters, unique_id=_HOOK_ID + "-params")

    def record(self, event_name: str) -> None:
        parts = event_name.split(".")
        service, operation = (parts[1], parts[2]) if len(parts) >= 3 else ("unknown", event_name)
        with self._lock:
            self.counts[(_CALLER.get(), service, operation)] += 1

    @staticmethod
    @contextmanager
    def simulating() -> Iterator[None]:
        """Attribute the requests made inside this block (this thread) to the simulator."""
        token = _CALLER.set(SIMULATOR)
        try:
            yield
        finally:
            _CALLER.reset(token)

    def total(self, caller: str | None = None) -> int:
        with self._lock:
            return sum(n for (who, _, _), n in self.counts.items() if caller is None or who == caller)

    def by_service(self, caller: str) -> dict[str, dict[str, int]]:
        """``{service: {operation: count}}`` of one caller, sorted."""
        result: dict[str, dict[str, int]] = {}
        with self._lock:
            items = sorted(self.counts.items())
        for (who, service, operation), count in items:
            if who == caller:
                result.setdefault(service, {})[operation] = count
        return result

    def report(self, delivered: int) -> dict[str, Any]:
        """The ``aws_requests.json`` document: counts per caller, service and operation, and per 1,000
        delivered messages (``null`` when nothing was delivered)."""

        def per_thousand(count: int) -> float | None:
            return round(count * 1000 / delivered, 2) if delivered else None

        document: dict[str, Any] = {"delivered_messages": delivered}
        for caller in (PIPELINE, SIMULATOR):
            services = self.by_service(caller)
            document[caller] = {
                "total": self.total(caller),
                "per_1000_delivered": per_thousand(self.total(caller)),
                "services": {
                    service: {
                        "total": sum(operations.values()),
                        "per_1000_delivered": per_thousand(sum(operations.values())),
                        "operations": operations,
                    }
                    for service, operations in services.items()
                },
            }
        return document
