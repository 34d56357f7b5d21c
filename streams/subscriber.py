"""Read a topic's records, decoded: from now, from the beginning, or from a timestamp;
as a consumer group member or standalone (every partition, no group)."""
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from flywheel.schemas import AvroSerde, DecodeFailure
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.clients import make_consumer, uses_generations
from flywheel.streams.metadata import offsets_for_times, watermarks
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog, topic_partitions

Start = Literal["latest", "earliest"] | int  # int: epoch milliseconds


@dataclass(frozen=True)
class Received:
    value: dict | DecodeFailure
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()
    raw: bytes | None = None          # the bytes as received: what a dead letter must carry


class Subscriber:
    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry, topic: str,
                 record_name: str, start: Start = "latest", group_id: str | None = None):
        self.topic = topic
        self._serde = AvroSerde(registry, record_name)
        # Where the topic is generations (the embedded broker), a generation started after this
        # reader is read from its first record: the timestamp filter below keeps "latest" true.
        generations = uses_generations(settings) and TopicCatalog(settings).rotates(topic)
        earliest = start == "earliest" or generations
        self._consumer = make_consumer(
            settings, group_id or f"flywheel-standalone-{uuid.uuid4().hex}",
            **{"auto.offset.reset": "earliest" if earliest else "latest"})
        self._start = start
        # Tansu answers offset look-ups at batch granularity: a partition's end is its last
        # batch's base offset + 1, and a time past the last record maps to offset 0. So a start
        # position may come early; records older than the start are dropped by timestamp. On
        # Apache Kafka the filter never drops anything.
        self._since = {"latest": int(time.time() * 1000), "earliest": 0}.get(start, start)
        self._next: dict[tuple[str, int], int] = {}     # (topic, partition) -> next offset to read
        self._subscribed = bool(group_id or generations)
        if self._subscribed:
            # A standalone reader of generations is a group of its own: only a subscription
            # follows the generations as they come and go (streams/generations.py).
            self._consumer.subscribe([topic], on_assign=self._on_assign)
        else:
            self._consumer.assign(self._start_positions(self._partitions()))

    @classmethod
    def predictions(cls, settings: KafkaSettings, registry: SchemaRegistry, model: str,
                    **kwargs) -> "Subscriber":
        return cls(settings, registry, TopicCatalog(settings).predictions(model), "Prediction", **kwargs)

    def _partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in topic_partitions(self._consumer, self.topic)]

    def _start_positions(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Resolve the start to concrete offsets now, so 'latest' means the moment of the call."""
        if self._start == "earliest":
            return [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions]
        if self._start == "latest":
            return [TopicPartition(tp.topic, tp.partition, watermarks(self._consumer, tp)[1])
                    for tp in partitions]
        wanted = [TopicPartition(tp.topic, tp.partition, int(self._start)) for tp in partitions]
        found = offsets_for_times(self._consumer, wanted)
        # -1: no record at or after the time; start at the end of that partition.
        return [tp if tp.offset >= 0 else
                TopicPartition(tp.topic, tp.partition, watermarks(self._consumer, tp)[1])
                for tp in found]

    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        """Place a partition first seen at the start; one read before (a rebalance, as
        generations come and go) goes on from the record after its last."""
        fresh = [tp for tp in partitions if (tp.topic, tp.partition) not in self._next]
        starts = {}
        if isinstance(self._start, int) and fresh:
            starts = {(tp.topic, tp.partition): tp for tp in self._start_positions(fresh)}
        consumer.assign([TopicPartition(tp.topic, tp.partition, self._next[(tp.topic, tp.partition)])
                         if (tp.topic, tp.partition) in self._next else starts.get((tp.topic, tp.partition), tp)
                         for tp in partitions])

    def poll_batch(self, max_records: int = 500, timeout: float = 1.0) -> list[Received]:
        """Up to `max_records`, waiting until that many arrived or `timeout` passed: a full batch."""
        return self._decoded(self._consumer.consume(max_records, timeout))

    def poll_arrived(self, max_records: int = 500, timeout: float = 1.0) -> list[Received]:
        """As soon as one record arrives (within `timeout`), it and whatever else is already here:
        what a caller waiting for one answer needs, where `poll_batch` would sit out its timeout."""
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        return self._decoded([first] + self._consumer.consume(max_records - 1, 0))

    def _decoded(self, messages: list) -> list[Received]:
        self._next |= {(m.topic(), m.partition()): m.offset() + 1 for m in messages if m.error() is None}
        good = [m for m in messages if m.error() is None and m.timestamp()[1] >= self._since]
        values = self._serde.decode_many([m.value() for m in good])
        return [Received(v, m.key(), m.topic(), m.partition(), m.offset(), m.timestamp()[1],
                         tuple(m.headers() or ()), m.value())
                for v, m in zip(values, good)]

    def commit(self) -> None:
        self._consumer.commit(asynchronous=False)

    def __iter__(self) -> Iterator[Received]:
        while True:
            yield from self.poll_arrived()

    def read(self, count: int, timeout: float) -> list[Received]:
        """Up to `count` records, waiting at most `timeout` seconds in all."""
        out: list[Received] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            out += self.poll_batch(min(10000, count - len(out)), min(1.0, max(0.0, deadline - time.monotonic())))
        return out

    def catch_up(self, timeout: float = 10.0) -> tuple[list[Received], bool]:
        """What is left up to the end of the topic as it is now (a standalone reader's assigned
        partitions, every generation's), and whether the end was reached within `timeout`. A
        subscription (a group, or generations) is given its partitions, and follows a new
        generation, only while it polls: it polls once each time, and until it has partitions,
        or it would be caught up on nothing, or on a generation no longer written, every time."""
        deadline = time.monotonic() + timeout
        out: list[Received] = []
        if self._subscribed:
            out += self.poll_batch(1000, 0.1)
        partitions = self._consumer.assignment()
        while self._subscribed and not partitions and time.monotonic() < deadline:
            out += self.poll_batch(1000, 0.1)
            partitions = self._consumer.assignment()
        ends = {(tp.topic, tp.partition): watermarks(self._consumer, tp, timeout)[1]    # BrokerUnavailable
                for tp in partitions}
        while time.monotonic() < deadline:
            positions = {(tp.topic, tp.partition): tp.offset for tp in self._consumer.position(partitions)}
            if all(end == 0 or positions[key] >= end for key, end in ends.items()):
                return out, True
            out += self.poll_batch(1000, 0.1)
        return out, False

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
