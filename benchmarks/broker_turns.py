"""What an exactly-once writer leaves in the embedded broker as topic generations turn.

Tansu 0.6 keeps its producers and transactions in one JSON document: a sequence number for every
(producer, epoch, topic, partition) ever written, deleted topics included, never pruned. It
rewrites the document on every write of an idempotent or transactional producer and reads it
back (deserialised whole once it changed) for every partition of every fetch. Generations give
a transactional writer new partitions at every turn, so the document grows with turns.

This run does what the worker does, on a bare broker: a transactional producer writes one
record to each partition of the current generation in each transaction while a read_committed
reader fetches it; every `--every` transactions the generation turns (a new topic, the oldest of
the live ones deleted). It prints the broker's CPU per transaction (utime + stime from /proc)
per block of turns, for each partition count given: the slope is what a turn adds.

    .venv/bin/python benchmarks/broker_turns.py --turns 300 --partitions 4,1
"""
import argparse
import time
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition
from flywheel.streams.broker import EmbeddedBroker, free_port
from flywheel.streams.clients import make_admin, make_consumer, make_producer
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicSpec, ensure_topics

LIVE = 4                  # generations alive at once (current + standby-like + kept)
TICK = 100


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICK


def run(partitions: int, turns: int, every: int, block: int) -> list[tuple[int, float]]:
    """(turns done, broker ms per transaction) per block of turns."""
    with EmbeddedBroker(free_port(), Path(f"/tmp/broker_turns_{partitions}.log")) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix=f"p{uuid.uuid4().hex[:6]}.",
                              partitions=partitions)
        admin = make_admin(kafka)
        producer = make_producer(kafka, f"turns-{partitions}", log_level=0)   # quiet as the broker stops
        producer.init_transactions(30)
        reader = make_consumer(kafka, "turns-reader", **{"fetch.wait.max.ms": 5})
        rows, live = [], []
        before, started = cpu_seconds(broker.pid), time.monotonic()
        for turn in range(turns):
            topic = f"{kafka.topic_prefix}out.g{turn:06d}"
            ensure_topics(admin, [TopicSpec(topic, partitions, 1)])
            live.append(topic)
            if len(live) > LIVE:
                for future in admin.delete_topics([live.pop(0)]).values():
                    future.result()
            reader.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
            for _ in range(every):
                producer.begin_transaction()
                for p in range(partitions):
                    producer.produce(topic, b"x" * 200, partition=p)
                producer.commit_transaction(30)
                reader.consume(100, 0)
            if (turn + 1) % block == 0:
                now = cpu_seconds(broker.pid)
                rows.append((turn + 1, (now - before) * 1000 / (block * every)))
                print(f"partitions {partitions}: turns {turn + 1:5d}  broker {rows[-1][1]:.3f} ms/transaction  "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
                before = now
        reader.close()
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300, help="generations written (default 300)")
    parser.add_argument("--every", type=int, default=40, help="transactions per generation (default 40)")
    parser.add_argument("--block", type=int, default=25, help="turns per printed row (default 25)")
    parser.add_argument("--partitions", default="4,1", help="partition counts to compare (default 4,1)")
    args = parser.parse_args()
    for partitions in [int(p) for p in args.partitions.split(",")]:
        rows = run(partitions, args.turns, args.every, args.block)
        first, last = rows[0][1], rows[-1][1]
        print(f"partitions {partitions}: {first:.3f} -> {last:.3f} ms/transaction over {args.turns} turns "
              f"({last / first:.2f}x)")


if __name__ == "__main__":
    main()
