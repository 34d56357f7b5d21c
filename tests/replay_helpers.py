"""Shared helpers of the replay tests: write timestamped records, read a topic to its end."""
import time

from confluent_kafka import TopicPartition
from flywheel.streams.clients import make_admin, make_consumer, make_producer
from flywheel.streams.topics import TopicSpec, ensure_topics


def create(kafka, *names: str, partitions: int = 4) -> None:
    ensure_topics(make_admin(kafka), [TopicSpec(n, partitions, 1) for n in names])


def write_history(kafka, topic: str, count: int, base: int, step_ms: int = 10, partitions: int = 4) -> list[dict]:
    """`count` records round-robin over the partitions, stamped base + i * step_ms, in several
    batches (so Tansu's batch-granular offset answers are exercised)."""
    producer = make_producer(kafka)
    records = []
    for i in range(count):
        record = {"value": f"v{i}".encode(), "key": f"k{i}".encode(), "partition": i % partitions,
                  "timestamp": base + i * step_ms, "headers": [("trace", f"t{i}".encode())]}
        producer.produce(topic, **record)
        records.append(record)
        if i % 97 == 96:
            producer.flush()
    producer.flush()
    return records


def read_all(kafka, topic: str, idle: float = 0.6, partitions: int = 4) -> list:
    """Every committed record of `topic`, reading until nothing arrives for `idle` seconds."""
    consumer = make_consumer(kafka, "replay-test-reader")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, last = [], time.monotonic()
    try:
        while time.monotonic() - last < idle:
            got = [m for m in consumer.consume(1000, 0.1) if m.error() is None]
            if got:
                out += got
                last = time.monotonic()
    finally:
        consumer.close()
    return out


def header(message, name: str) -> bytes | None:
    return next((v for k, v in message.headers() or () if k == name), None)
