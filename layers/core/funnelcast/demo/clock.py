"""A simulated clock: every service of the demo reads time from it, nothing calls ``datetime.now()``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SimulatedClock:
    """Aware UTC time that only moves when the demo moves it (never backwards).

    Instances are callable, so ``deps.clock = clock`` fits every dependencies object.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"the simulated clock needs an aware start time, got {start.isoformat()}")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self.now()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        """Move to ``moment``; moving backwards is a bug in the caller and raises ``ValueError``."""
        target = moment.astimezone(UTC)
        with self._lock:
            if target < self._now:
                raise ValueError(f"the simulated clock cannot go back from {self._now} to {target}")
            self._now = target

    def advance(self, delta: timedelta) -> datetime:
        self.set(self.now() + delta)
        return self.now()
