"""Channel senders: rendering + compliance, provider adapters, fakes and the SQS batch worker."""

from __future__ import annotations
