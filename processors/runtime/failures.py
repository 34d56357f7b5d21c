"""The failure model of every stream processor, in one place.

A processor's batch loop meets three kinds of failure, and each has one answer. In order:

1. A record's content is the problem (it cannot be decoded, a field is out of bounds, a time is
   too far from now, a label is not one of the model's classes, the record or its output is too
   big): that record becomes one dead letter (reason, detail, original key, bytes and headers),
   produced in the same transaction as the batch's other outputs, and the partition moves on.
   Never an exit, never a silently skipped record. The processor builds the dead letter
   (`DeadLetterWriter`); nothing here is raised for it.
2. Something the processor depends on did not answer (the broker, the feature store, the schema
   registry, or anything added later: every error on the `flywheel.errors.Unavailable` branch):
   backpressure. The batch is not committed (its partitions are rewound, or the call is retried
   where it stands), nothing past an unwritten record is committed, and the loop waits with
   jittered exponential backoff (`Backoff`) and tries again, for as long as it takes or until the
   processor is stopped. A batch whose commit failed (`CommitError`, an `Unavailable` the
   committer has already rewound) is redone the same way. The branch, not a list of types, is the
   rule: a new dependency's errors subclass `Unavailable` and this module stays as it is.
3. Anything else is a bug (or a state the process cannot go on from, such as a fenced producer):
   it propagates, the process exits non-zero and the supervisor restarts it. The consumer group
   resumes from the last committed offsets, which never run ahead of written outputs, so a crash
   loses nothing and repeats at most the uncommitted batch.

`run_batches` is the loop every processor runs (worker, joiner, monitor, rollout);
`hold_back` retries one call in place, and `HeldBack` wraps a dependency (a store, a decoder) so
that every call of it is retried so: backpressure by construction, not by remembering. A stream
processor gets all three from its base (processor.py).
"""
import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from flywheel.errors import Unavailable

T = TypeVar("T")
log = logging.getLogger("flywheel.failures")


class Backoff:
    """Jittered exponential waits between attempts, cut short when `stop` is set."""

    def __init__(self, stop: threading.Event, base_s: float = 0.1, cap_s: float = 5.0):
        self.stop = stop
        self.base_s, self.cap_s = base_s, cap_s
        self.failures = 0

    def delay(self) -> float:
        return min(self.cap_s, self.base_s * 2 ** min(self.failures - 1, 16)) * random.uniform(0.5, 1.0)

    def wait(self, processor: str, error: Exception) -> None:
        self.failures += 1
        delay = self.delay()
        log.warning("%s: %s, holding back %.2fs (attempt %d): %s", processor,
                    type(error).__name__, delay, self.failures, error)
        self.stop.wait(delay)

    def reset(self) -> None:
        self.failures = 0


def hold_back(call: Callable[[], T], stop: threading.Event, processor: str = "processor") -> T:
    """`call()`, retried while it raises `Unavailable` (rule 2), until it works or `stop` is set
    (then the last error is raised: the batch stays uncommitted)."""
    backoff = Backoff(stop)
    while True:
        try:
            return call()
        except Unavailable as error:
            if stop.is_set():
                raise
            backoff.wait(processor, error)


class HeldBack(Generic[T]):
    """`target` with every method call held back (`hold_back`); other attributes pass through.
    A call that returns an iterator (a store's lazy read) is read whole inside the retry, so an
    outage half-way through the read is held back too."""

    def __init__(self, target: T, stop: threading.Event, processor: str):
        self._target, self._stop, self._processor = target, stop, processor

    def __getattr__(self, name: str):
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def held(*args, **kwargs):
            return hold_back(lambda: _whole(value(*args, **kwargs)), self._stop, self._processor)
        return held


def _whole(result):
    return list(result) if isinstance(result, Iterator) else result


def run_batches(step: Callable[[], object], stop: threading.Event, processor: str) -> None:
    """Call `step()` until `stop` is set, applying the rules: an unavailable dependency (the step
    has left its batch uncommitted and rewound) is waited out and the batch redone; anything
    else propagates (rule 3)."""
    backoff = Backoff(stop)
    while not stop.is_set():
        try:
            step()
        except Unavailable as error:
            backoff.wait(processor, error)
            continue
        backoff.reset()
