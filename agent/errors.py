"""One exception root for the agent; third-party errors are translated where they enter."""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration file is unusable; ``errors`` holds every problem with its path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


class RejectedReading(AgentError):
    """A sensor message failed validation; the message says why in one line, ``kind`` is a
    short label for counters (topic, too-large, encoding, malformed, invalid, timestamp, unit,
    out-of-range)."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


class StorageError(AgentError):
    """The local database could not be opened or written."""


class BrokerError(AgentError):
    """The MQTT broker could not be reached or refused us."""


class NeedsModel(AgentError):
    """Not a failure: a decision asked to use rules only met a policy whose engine is the
    model's now (its gate passed meanwhile); the caller hands it to a thread that may wait."""
