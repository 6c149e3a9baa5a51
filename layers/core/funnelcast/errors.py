"""Domain errors. Adapters turn AWS error codes into these; handlers and the CLI report them."""

from __future__ import annotations


class FunnelcastError(Exception):
    """Base of every error funnelcast raises on purpose."""


class ConfigurationError(FunnelcastError):
    """A setting is missing or malformed."""


class RuleError(FunnelcastError):
    """A rule file or rule set is invalid. ``problems`` holds every ``file:line:col: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class DataContractError(FunnelcastError):
    """Input data cannot be used at all (unreadable file, missing required column)."""


class StorageError(FunnelcastError):
    """Reading or writing an object failed."""


class ObjectNotFoundError(StorageError):
    """The object does not exist."""


class PreconditionFailedError(StorageError):
    """A conditional write lost: the object already exists or changed."""


class SnapshotMissingError(FunnelcastError):
    """No segment snapshot exists yet for the requested rules."""


class CapStoreError(FunnelcastError):
    """The cap table could not be read or written."""


class QueueError(FunnelcastError):
    """An SQS request failed."""


class SchedulerError(FunnelcastError):
    """An EventBridge Scheduler request failed."""


class ProviderError(FunnelcastError):
    """A channel provider call failed.

    ``retryable`` says whether the same call may succeed later (throttling, 5xx, timeout);
    ``refused`` says the channel cannot reach this user at all (fall back to the next channel).
    """

    def __init__(self, reason: str, *, retryable: bool = False, refused: bool = False) -> None:
        self.reason = reason
        self.retryable = retryable
        self.refused = refused
        super().__init__(reason)


class TemplateRenderError(FunnelcastError):
    """A template could not be rendered for one recipient."""
