"""Map a time range to offset ranges, and read offset ranges partition by partition.

Apache Kafka answers `offsets_for_times` exactly (the first offset whose timestamp is >= t) and
reports exact high watermarks. Tansu answers both at batch granularity or not at all (a time
lookup may return 0; the high watermark is the last batch's base offset + 1). Both answers are
lower bounds, so the rules here are written to be exact on Kafka and still correct on Tansu:

- begin = offsets_for_times(start): a lower bound is fine, records before `start` are dropped
  by their timestamp;
- stop = offsets_for_times(end), kept only if the record there really has a timestamp >= end
  (always on Kafka); otherwise the partition's true end, found by reading its last batch;
- a record is inside the range when begin <= offset < stop and start <= timestamp < end.
"""
import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, TopicPartition
from flywheel.streams.metadata import offsets_for_times, watermarks
from flywheel.streams.replay.errors import BadTimeRange, ReplayStalled
from flywheel.streams.topics import topic_partitions

LOOKUP_TIMEOUT = 10.0


@dataclass(frozen=True)
class TimeRange:
    start: int  # epoch ms, inclusive
    end: int    # epoch ms, exclusive

    def __post_init__(self):
        if self.end <= self.start:
            raise BadTimeRange(f"the range ends ({self.end}) at or before it starts ({self.start})")

    def __contains__(self, timestamp: int) -> bool:
        return self.start <= timestamp < self.end


@dataclass(frozen=True)
class PartitionRange:
    topic: str
    partition: int
    begin: int
    stop: int  # exclusive

    @property
    def size(self) -> int:
        return max(0, self.stop - self.begin)


def resolve(consumer: Consumer, topic: str, window: TimeRange) -> list[PartitionRange]:
    """The offset range of `window` on every partition of `topic`."""
    partitions = topic_partitions(consumer, topic)
    ends = log_ends(consumer, topic, partitions)
    begins = _offsets_for(consumer, topic, partitions, window.start)
    stops = _offsets_for(consumer, topic, partitions, window.end)
    exact = _stops_confirmed(consumer, topic, {p: stops[p] for p in partitions if 0 <= stops[p] < ends[p]},
                             window.end)
    ranges = []
    for p in partitions:
        stop = stops[p] if p in exact else ends[p]
        begin = begins[p] if 0 <= begins[p] <= stop else stop
        ranges.append(PartitionRange(topic, p, begin, stop))
    return ranges


def _offsets_for(consumer: Consumer, topic: str, partitions: list[int], ms: int) -> dict[int, int]:
    found = offsets_for_times(consumer, [TopicPartition(topic, p, ms) for p in partitions], LOOKUP_TIMEOUT)
    return {tp.partition: tp.offset for tp in found}  # -1: no record at or after ms


def _stops_confirmed(consumer: Consumer, topic: str, stops: dict[int, int], end: int) -> set[int]:
    """The partitions whose looked-up stop offset holds a record stamped at or after `end`."""
    if not stops:
        return set()
    first = _first_records(consumer, [TopicPartition(topic, p, o) for p, o in stops.items()])
    return {p for p, m in first.items() if m is not None and m.timestamp()[1] >= end}


def _first_records(consumer: Consumer, positions: list[TopicPartition],
                   timeout: float = 5.0) -> dict[int, Message | None]:
    """The first record at or after each position (None where none came in time)."""
    consumer.assign(positions)
    wanted = {tp.partition: tp.offset for tp in positions}
    found: dict[int, Message | None] = {p: None for p in wanted}
    deadline = time.monotonic() + timeout
    try:
        while any(m is None for m in found.values()) and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.2):
                if m.error() is None and found.get(m.partition()) is None and m.offset() >= wanted[m.partition()]:
                    found[m.partition()] = m
    finally:
        consumer.unassign()
    return found


def log_ends(consumer: Consumer, topic: str, partitions: list[int], timeout: float = 3.0) -> dict[int, int]:
    """The offset after each partition's last record: the high watermark, raised to what reading
    the last batch shows (Tansu's watermark is the last batch's base offset + 1)."""
    highs = {p: high_watermark(consumer, topic, p) for p in partitions}
    positions = [TopicPartition(topic, p, max(0, h - 1)) for p, h in highs.items()]
    consumer.assign(positions)
    ends = dict(highs)
    pending = set(partitions)
    deadline = time.monotonic() + timeout
    quiet_rounds = 0
    try:
        while pending and time.monotonic() < deadline:
            messages = [m for m in consumer.consume(10000, 0.2) if m.error() is None]
            for m in messages:
                ends[m.partition()] = max(ends[m.partition()], m.offset() + 1)
                pending.discard(m.partition())
            quiet_rounds = 0 if messages else quiet_rounds + 1
            if quiet_rounds >= 2:  # a partition with nothing to read has no position to show it
                pending -= {p for p in pending if highs[p] == 0}
            for tp in consumer.position(positions):
                # Past the watermark with nothing delivered: the tail was a transaction marker.
                if tp.offset >= 0 and tp.offset >= highs[tp.partition]:
                    ends[tp.partition] = max(ends[tp.partition], tp.offset)
                    pending.discard(tp.partition)
    finally:
        consumer.unassign()
    return ends


def high_watermark(consumer: Consumer, topic: str, partition: int) -> int:
    return watermarks(consumer, TopicPartition(topic, partition), LOOKUP_TIMEOUT)[1]


@dataclass
class Batch:
    messages: list[Message]
    # Per partition, the offset every record before which has been delivered (or skipped as a
    # transaction marker), capped at the range's stop.
    reached: dict[int, int]


def scan(consumer: Consumer, topic: str, starts: dict[int, int], stops: dict[int, int],
         batch_size: int = 1000, stall_timeout: float = 30.0) -> Iterator[Batch]:
    """Read each partition from starts[p] up to stops[p], in batches of records inside those
    offsets. Ends when every partition has reached its stop."""
    active = {p for p in starts if starts[p] < stops[p]}
    if not active:
        return
    assigned = [TopicPartition(topic, p, starts[p]) for p in sorted(active)]
    consumer.assign(assigned)
    reached = {p: starts[p] for p in active}
    last_move = time.monotonic()
    try:
        while active:
            messages = [m for m in consumer.consume(batch_size, 0.5)
                        if m.error() is None and m.partition() in active and m.offset() < stops[m.partition()]]
            moved = _advance(consumer, topic, active, reached, stops, messages)
            if moved:
                last_move = time.monotonic()
            elif time.monotonic() - last_move > stall_timeout:
                behind = ", ".join(f"[{p}] at {reached[p]} of {stops[p]}" for p in sorted(active))
                raise ReplayStalled(f"{topic} stopped moving for {stall_timeout:.0f}s: {behind}")
            done = [p for p in active if reached[p] >= stops[p]]
            if done:
                consumer.pause([TopicPartition(topic, p) for p in done])
                active -= set(done)
            if messages or moved:
                yield Batch(messages, {p: reached[p] for p in reached})
    finally:
        consumer.unassign()


def _advance(consumer: Consumer, topic: str, active: set[int], reached: dict[int, int],
             stops: dict[int, int], messages: list[Message]) -> bool:
    before = dict(reached)
    for m in messages:
        reached[m.partition()] = max(reached[m.partition()], m.offset() + 1)
    # The consumer's position also moves past transaction markers, which are never delivered.
    for tp in consumer.position([TopicPartition(topic, p) for p in active]):
        if tp.offset >= 0:
            reached[tp.partition] = max(reached[tp.partition], min(tp.offset, stops[tp.partition]))
    return reached != before
