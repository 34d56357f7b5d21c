"""The base every stream processor is built on (worker, joiner, monitor, and any new one).

`StreamProcessor.__init__` wires, from the Kafka settings, the parts each processor used to wire
by hand: the topic catalog, the dead-letter writer, the consumer, the producer behind one
`BatchCommitter`, the consumer-lag tracker and the /metrics endpoint. A subclass writes `step()`
(one batch) and gets, by construction:

- the failure model (failures.py): `run()` loops `step()` under `run_batches` (an unavailable
  dependency is waited out, anything else exits for the supervisor to restart); `held(x)` wraps
  a store or decoder so that every call of it holds back; `decode()` turns a record that cannot
  be decoded into a dead letter; `commit()` writes a batch's outputs, dead letters and offsets
  by the one commit protocol;
- metrics: the processor's registry (ProcessorMetrics or a subclass) counts dead letters by
  reason, shows consumer lag after each batch (`run`), and is served on `Endpoint.port` (0: not served);
- shutdown: the loop checks `stop` (set by SIGTERM/SIGINT in the commands, see
  runtime/shutdown.py) between batches, then `close()` aborts a transaction left open, flushes
  what is queued, leaves the consumer group (its partitions move at once) and stops the endpoint.

The commit protocol of one batch, in order (commit.py has each step's failures):

1. `start()`, once: `init_transactions()` (exactly-once), which fences a killed predecessor with
   the same transactional id, and a check that every output topic takes records as big as the
   producer may write;
2. consume and compute; a store or registry call that fails unavailable is retried where it
   stands (`held`), nothing being committed meanwhile;
3. `begin()`: open the batch's transaction (exactly-once; nothing at-least-once);
4. produce the outputs and one dead letter per refused record (an `Outbox`);
5. commit: exactly-once, the consumed offsets go into the transaction and it commits, outputs and
   offsets together or not at all; at-least-once, the producer is flushed, every delivery checked,
   then the offsets committed. A failure rewinds the batch's partitions to its first offsets and
   raises a `CommitError`, which `run()` waits out like any unavailability before the batch is
   redone. A processor whose state already took the batch (the monitor's windows) passes no
   records to rewind, only the offsets (`upto`).

Which of the two modes is one flag: a `transactional_id` makes the processor exactly-once.
"""
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Message, TopicPartition
from flywheel.processors.runtime.budget import check_output_topics
from flywheel.processors.runtime.commit import BatchCommitter
from flywheel.processors.runtime.deadletter import DeadLetterWriter
from flywheel.processors.runtime.failures import HeldBack, hold_back, run_batches
from flywheel.processors.runtime.lag import LagTracker
from flywheel.processors.runtime.metrics import ProcessorMetrics, start_metrics_server
from flywheel.processors.runtime.pipeline import Outbox
from flywheel.schemas import AvroSerde, DecodeFailure
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.clients import make_admin, make_consumer, make_producer
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog

T = TypeVar("T")
DeadLetters = list[tuple[Message, str, str]]    # (record, reason, detail)


@dataclass(frozen=True)
class Endpoint:
    """Where the processor serves /metrics; port 0: nowhere (tests, embedded use)."""
    port: int = 0
    addr: str = "127.0.0.1"


class StreamProcessor:
    name = "processor"      # the `processor` label of its metrics and the name in its log lines

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, metrics: ProcessorMetrics, group_id: str, *,
                 transactional_id: str | None = None, commit_timeout_s: float = 30.0,
                 consumer_config: dict[str, Any] | None = None, producer_config: dict[str, Any] | None = None,
                 stop: threading.Event | None = None, endpoint: Endpoint | None = None):
        self.catalog = TopicCatalog(kafka)
        self.metrics = metrics
        self.stop = stop or threading.Event()
        self.max_message_bytes = kafka.max_message_bytes
        self.deadletters = DeadLetterWriter(AvroSerde(registry, "DeadLetter"), self.catalog.deadletter, self.name,
                                            metrics.dead_letters, kafka.max_message_bytes)
        self.admin = make_admin(kafka)
        self.consumer = make_consumer(kafka, group_id, **(consumer_config or {}))
        producer = make_producer(kafka, transactional_id, **(producer_config or {}))
        self.committer = BatchCommitter(self.consumer, producer, transactional_id is not None, commit_timeout_s)
        self.lag = LagTracker(self.consumer, metrics.consumer_lag, self.name)
        endpoint = endpoint or Endpoint()
        self._endpoint = start_metrics_server(endpoint.port, metrics.registry, endpoint.addr)

    # -- what a processor writes -----------------------------------------------------------------

    def step(self) -> object:
        """Process one batch (consume, compute, `commit`)."""
        raise NotImplementedError

    def output_topics(self) -> list[str]:
        """The topics it writes, checked at start-up against the producer's size limit."""
        return [self.catalog.deadletter]

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.committer.start()
        self.hold_back(lambda: check_output_topics(self.admin, self.output_topics(), self.max_message_bytes))

    def run(self) -> None:
        """Serve until `stop` is set, then leave cleanly, whatever ended the loop."""
        try:
            self.start()
            run_batches(self._step, self.stop, self.name)
        finally:
            self.close()

    def _step(self) -> None:
        self.step()
        self.lag.update()       # at most every 2 s

    def close(self) -> None:
        try:
            self.committer.close()      # aborts a transaction left open; nothing is committed half
        finally:
            self.consumer.close()       # leaves the group so partitions move at once
            if self._endpoint is not None:
                server, _ = self._endpoint
                server.shutdown()
                server.server_close()
                self._endpoint = None

    # -- the failure model -----------------------------------------------------------------------

    def hold_back(self, call: Callable[[], T]) -> T:
        return hold_back(call, self.stop, self.name)

    def held(self, target: T) -> T:
        """`target` (a store, a decoder) with every call held back while it is unavailable."""
        return HeldBack(target, self.stop, self.name)     # type: ignore[return-value]

    def consume(self, size: int, timeout_s: float) -> list[Message]:
        return [m for m in self.consumer.consume(size, timeout_s) if m.error() is None]

    def decode(self, serde: AvroSerde, messages: list[Message], dead: DeadLetters) -> list[tuple[Message, dict]]:
        """The records that decode, with their messages; the rest join `dead` (an unavailable
        registry is held back, never a dead letter)."""
        decoded = self.hold_back(lambda: serde.decode_many([m.value() for m in messages]))
        good = []
        for m, value in zip(messages, decoded):
            if isinstance(value, DecodeFailure):
                dead.append((m, value.reason, value.detail))
            else:
                good.append((m, value))
        return good

    def commit(self, messages: Iterable[Message], outbox: Outbox | None = None, dead: DeadLetters = (),
               upto: list[TopicPartition] | None = None) -> None:
        """Steps 3 to 5 of the protocol: the outbox's records and one dead letter per record in
        `dead` (with the first reason found for it), then `messages`' offsets (or `upto`)."""
        outbox = outbox or Outbox()
        seen = set()
        for m, reason, detail in dead:
            where = (m.topic(), m.partition(), m.offset())
            if where not in seen:
                seen.add(where)
                self.deadletters.send_message(outbox, m, reason, detail)
        self.committer.begin()
        outbox.write(self.committer)
        self.committer.commit(list(messages), upto)
