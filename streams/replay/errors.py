"""Typed failures of replay runs; each message is one line a person can act on."""
from streams.errors import StreamsError


class ReplayError(StreamsError):
    pass


class RunMismatch(ReplayError):
    """A run id was reused with different parameters: resuming it would not replay the same range."""


class ReplayStalled(ReplayError):
    """Partitions stopped moving before the end of their range (an open transaction upstream,
    or a broker that stopped answering). Progress so far is checkpointed; resume later."""


class BadTimeRange(ReplayError):
    pass


class SourceHasGenerations(ReplayError):
    """On the embedded broker a high-volume topic is a sequence of generations (see
    streams/generations.py); a replay reads one physical topic, named."""
