"""Backoff for calls the sender repeats in process (HTTP providers, unprocessed DynamoDB batch items)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter (AWS architecture blog): sleep U(0, min(cap, base*2^n))."""

    attempts: int = 3
    base_seconds: float = 0.2
    cap_seconds: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        return self.rng() * min(self.cap_seconds, self.base_seconds * 2**attempt)
