"""One adapter per channel. Each raises ``ProviderError`` (retryable / refused) and nothing else."""

from __future__ import annotations
