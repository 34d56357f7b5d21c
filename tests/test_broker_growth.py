"""The embedded broker's CPU per record must not grow with what it holds.

Tansu 0.6 (memory storage) lists every batch a partition holds on each fetch that finds records:
unbounded, its CPU per record grows with the batches held (measured: 0.08 ms at 2,000
single-record batches, 3.4 ms at 24,000 on a busy machine; on a quiet one flat to about 16,000,
then 10-20 times higher by 20,000), until the stack starves. Topic generations
(streams/generations.py, rotated by streams/rotation.py) bound what a partition holds. This test
writes single-record batches (the exactly-once worst case) through the same clients the stack
uses, read by a consumer group that commits, and compares the broker's CPU per record early and
late: with rotation the two stay close, without it the late window costs many times more.
"""
import os
import uuid
from pathlib import Path

from flywheel.streams.broker import EmbeddedBroker, free_port
from flywheel.streams.clients import make_admin, make_consumer, make_producer
from flywheel.streams.generations import RETIRED, SEALED
from flywheel.streams.rotation import Rotator
from flywheel.streams.settings import KafkaSettings, RotationSettings
from flywheel.streams.topics import TopicCatalog, ensure_topics

WINDOW = 2000             # records per measurement window
TOTAL = 24_000
GENERATION = 3000         # records a generation
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICK


def test_broker_cpu_per_record_stays_flat_as_records_pass(tmp_path):
    with EmbeddedBroker(free_port(), tmp_path / "broker.log") as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
                              partitions=1, session_timeout_ms=6000, topic_generations=True)
        costs, held = write_and_read(kafka, broker.pid)     # its clients gone before the broker
    # Rotating, what a partition holds is bounded, and each turn costs rebalances:
    # from the third window on the cost is steady. Unbounded, the last windows cost 5-15 times
    # what the third and fourth did.
    early, late = sum(costs[2:4]) / 2, sum(costs[-2:]) / 2
    ms = [round(c * 1000, 3) for c in costs]
    assert held < TOTAL // GENERATION, f"old generations were not deleted: {held} held"
    assert late < 3 * max(early, 1 / TICK / WINDOW), \
        f"broker CPU per record grew with records held (ms per window: {ms})"


def write_and_read(kafka: KafkaSettings, pid: int) -> tuple[list[float], int]:
    """Broker CPU seconds per record in each window, and the generations held at the end."""
    catalog = TopicCatalog(kafka)
    admin = make_admin(kafka)
    ensure_topics(admin, [catalog.generation_spec(catalog.labels, 1)])
    rotator = Rotator(admin, catalog, RotationSettings(
        generation_records=GENERATION, generation_seconds=3600, standby_generations=1, keep_seconds=0,
        check_seconds=0.5, retire_seconds=3))     # the reader lists topics every 2 s
    producer = make_producer(kafka, **{"linger.ms": 0})
    consumer = make_consumer(kafka, "growth")
    consumer.subscribe([catalog.labels])
    costs = []
    try:
        for _ in range(TOTAL // WINDOW):
            before = cpu_seconds(pid)
            for _ in range(WINDOW):
                producer.produce(catalog.labels, b"x" * 300)
                producer.flush()           # one record per batch: the costly case
                if consumer.consume(100, 0):
                    consumer.commit(asynchronous=True)
                rotator.tick()
            costs.append((cpu_seconds(pid) - before) / WINDOW)
    finally:
        consumer.close()
    listed = admin.list_topics(timeout=10).topics
    return costs, len([t for t in listed if t.startswith(catalog.labels) and not t.endswith((RETIRED, SEALED))])
