"""Leadership: which models this process decides for, when several processes of one kind run.

The trigger and the rollout take decisions that must be taken once (a retrain request, a
promotion). Several processes of each may run, so that a stand-by takes over when one dies;
exactly one of them decides for a model at a time. Who that is comes from Kafka's group
assignment, the machinery that already shares a topic's partitions among a consumer group, so it
needs nothing the stack does not run anyway:

1. Every process of a kind joins the group `<topic prefix>flywheel-<kind>-leaders` on the
   `leadership` topic. The topic holds no records: its partitions are only the unit of
   leadership.
2. A model belongs to partition crc32(model) mod the topic's partitions; a process leads the
   models whose partition it is assigned (round-robin, so two processes share the models).
3. A thread of its own polls the group's consumer, so that the group sees the process alive and
   its rebalances are served at once, whatever the decision loop is doing.
4. A decision runs inside `deciding(model)`, which holds a lock; giving a partition up takes the
   same lock. The rebalance is eager (every member gives everything up before anything is handed
   out again), so a partition reaches another process only after the decision in progress here
   has finished.
5. A process killed with kill -9 stops heartbeating; the group hands its partitions to a stand-by
   `session_timeout_ms` later. A process that lost its membership (it stalled past the session
   timeout) stops deciding at once.
"""
import logging
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from flywheel.streams.clients import make_consumer
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import LEADERSHIP_PARTITIONS, TopicCatalog

log = logging.getLogger(__name__)


def partition_of(model: str) -> int:
    return zlib.crc32(model.encode()) % LEADERSHIP_PARTITIONS


class Leadership:
    """This process's share of a kind's models, from the group's assignment; see the module text."""

    def __init__(self, kafka: KafkaSettings, kind: str, poll_seconds: float = 0.2):
        self.kind = kind
        self._held: frozenset[int] = frozenset()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._consumer = make_consumer(kafka, f"{kafka.topic_prefix}flywheel-{kind}-leaders",
                                       **{"partition.assignment.strategy": "roundrobin"})
        self._consumer.subscribe([TopicCatalog(kafka).leadership], on_assign=self._assigned,
                                 on_revoke=self._revoked, on_lost=self._lost)
        self._thread = threading.Thread(target=self._serve, args=(poll_seconds,), daemon=True,
                                        name=f"{kind}-leadership")
        self._thread.start()

    def leads(self, model: str) -> bool:
        return partition_of(model) in self._held

    @property
    def partitions(self) -> frozenset[int]:
        return self._held

    @contextmanager
    def deciding(self, model: str) -> Iterator[bool]:
        """Yields whether this process leads `model`; while inside, its leadership stays."""
        with self._lock:
            yield self.leads(model)

    def close(self) -> None:
        """Leave the group, so a stand-by takes over at once rather than after the session timeout."""
        self._closed.set()
        self._thread.join()
        self._consumer.close()
        self._set(set())

    def _serve(self, poll_seconds: float) -> None:
        while not self._closed.is_set():
            self._consumer.poll(poll_seconds)

    def _assigned(self, consumer, partitions) -> None:
        self._set(self._held | {p.partition for p in partitions})

    def _revoked(self, consumer, partitions) -> None:
        with self._lock:    # waits for a decision in progress
            self._set(self._held - {p.partition for p in partitions})

    def _lost(self, consumer, partitions) -> None:
        self._set(self._held - {p.partition for p in partitions})

    def _set(self, held: set[int]) -> None:
        if held != self._held:
            log.info("%s leads %d of %d partitions of leadership", self.kind, len(held), LEADERSHIP_PARTITIONS)
        self._held = frozenset(held)


class SoleLeader:
    """The only process that decides, for every model: one-shot commands and in-process use."""

    partitions = frozenset(range(LEADERSHIP_PARTITIONS))

    def leads(self, model: str) -> bool:
        return True

    @contextmanager
    def deciding(self, model: str) -> Iterator[bool]:
        yield True

    def close(self) -> None:
        pass
