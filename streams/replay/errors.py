"""Typed failures of replay runs; each message is one line a person can act on."""
from flywheel.streams.errors import StreamsError

from flywheel.errors import BadInput, Unavailable


class ReplayError(StreamsError):
    """Base of replay's errors; one not on a branch below is a bug."""


class RunMismatch(ReplayError, BadInput):
    """A run id was reused with different parameters: resuming it would not replay the same range."""


class ReplayStalled(ReplayError, Unavailable):
    """Partitions stopped moving before the end of their range (an open transaction upstream,
    or a broker that stopped answering). Progress so far is checkpointed; resume later."""


class BadTimeRange(ReplayError, BadInput):
    """The time range the user gave is empty, reversed or outside the topics' records."""


class SourceHasGenerations(ReplayError, BadInput):
    """On the embedded broker a high-volume topic is a sequence of generations (see
    streams/generations.py); a replay reads one physical topic, named."""
