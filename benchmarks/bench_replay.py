"""Replay throughput on the embedded broker: dry run (read + decide), topic -> topic (read,
transactional write, checkpoint) at batch sizes 100 and 1000, and a rate-limited run.

    .venv/bin/python benchmarks/bench_replay.py [--records 50000]

One Tansu broker, one source topic of 4 partitions; every case replays the whole range into a
fresh target. Machines here have 2 shared cores: compare rows within one run.
"""
import argparse
import tempfile
import time
import uuid
from pathlib import Path

from flywheel.streams.broker import EmbeddedBroker, free_port
from flywheel.streams.clients import make_admin, make_producer
from flywheel.streams.replay import Checkpoints, ReplayOptions, TimeRange
from flywheel.streams.replay.topic import topic_replay
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicSpec, ensure_topics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    with EmbeddedBroker(free_port(), work / "broker.log") as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap)
        ensure_topics(make_admin(kafka), [TopicSpec("src", 4, 1)])
        producer = make_producer(kafka)
        start = int(time.time() * 1000) - 60_000
        for i in range(args.records):
            producer.produce("src", b"x" * 200, f"k{i}".encode(), partition=i % 4, timestamp=start + i % 50_000,
                             headers=[("trace", b"t")])
            if i % 10_000 == 0:
                producer.flush()
        producer.flush()
        window = TimeRange(start, start + 60_000)
        cases = [("dry run", ReplayOptions(dry_run=True)),
                 ("topic -> topic, batch 100", ReplayOptions(batch_size=100)),
                 ("topic -> topic, batch 1000", ReplayOptions(batch_size=1000)),
                 ("topic -> topic, --rate 5000", ReplayOptions(rate=5000))]
        print(f"| case ({args.records:,} records) | seconds | records/s |\n|---|---:|---:|")
        for name, options in cases:
            target = f"dst-{uuid.uuid4().hex[:6]}"
            ensure_topics(make_admin(kafka), [TopicSpec(target, 4, 1)])
            checkpoints = Checkpoints(work / f"{target}.sqlite")
            began = time.perf_counter()
            report = topic_replay(kafka, checkpoints, target, "src", target, window, options).run()
            seconds = time.perf_counter() - began
            sent = sum(report.totals().values())
            print(f"| {name} | {seconds:.2f} | {sent / seconds:,.0f} |")


if __name__ == "__main__":
    main()
