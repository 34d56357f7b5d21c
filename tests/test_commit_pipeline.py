"""The commit pipeline against the real broker: commits overlapped with the next batch keep
every record exactly once and in order, and a commit that fails rewinds both the batch in
flight and the batch consumed behind it, so nothing is skipped."""
import threading
import time

import pytest
from confluent_kafka import Producer, TopicPartition
from flywheel.processors.runtime import BatchCommitter, DeliveryError
from flywheel.processors.runtime.pipeline import CommitPipeline, CommitStuck, Outbox
from flywheel.streams.clients import make_admin, make_consumer, make_producer
from flywheel.streams.topics import TopicSpec, ensure_topics


def _topic_with(kafka, name, n):
    topic = f"{kafka.topic_prefix}{name}"
    ensure_topics(make_admin(kafka), [TopicSpec(topic, 1, 1)])
    p = make_producer(kafka)
    for i in range(n):
        p.produce(topic, str(i).encode())
    p.flush(10)
    return topic


def _consume(consumer, n, timeout=10.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += [m for m in consumer.consume(n - len(out), 0.5) if m.error() is None]
    return out


def _relay(batch, dst):
    outbox = Outbox()
    outbox.produce_many(dst, [m.value() for m in batch], [None] * len(batch), [None] * len(batch))
    return outbox


def test_overlapped_commits_keep_every_record_once_in_order(kafka):
    src = _topic_with(kafka, "pipe-src", 300)
    dst = f"{kafka.topic_prefix}pipe-dst"
    ensure_topics(make_admin(kafka), [TopicSpec(dst, 1, 1)])
    consumer = make_consumer(kafka, "pipe-group")
    consumer.assign([TopicPartition(src, 0, 0)])
    pipeline = CommitPipeline(BatchCommitter(consumer, make_producer(kafka, transactional_id="pipe-tx")))
    done = 0
    while done < 300:
        batch = _consume(consumer, 50)
        pipeline.settle(batch)
        pipeline.commit(batch, _relay(batch, dst))
        done += len(batch)
    pipeline.close()
    assert consumer.committed([TopicPartition(src, 0)], timeout=10)[0].offset == 300
    reader = make_consumer(kafka, "pipe-reader-unused")
    reader.assign([TopicPartition(dst, 0, 0)])
    got = _consume(reader, 300) + [m for m in reader.consume(100, 1.0) if m.error() is None]
    assert [int(m.value()) for m in got] == list(range(300))


def test_a_failed_commit_rewinds_the_batch_in_flight_and_the_one_behind_it(kafka):
    """At-least-once, a delivery that cannot succeed (its topic does not exist and is not
    created) fails the first commit while the second batch is already consumed."""
    src = _topic_with(kafka, "pipe-fail-src", 20)
    consumer = make_consumer(kafka, "pipe-fail-group")
    consumer.assign([TopicPartition(src, 0, 0)])
    producer = make_producer(kafka, **{"message.timeout.ms": 2000, "allow.auto.create.topics": False})
    pipeline = CommitPipeline(BatchCommitter(consumer, producer, exactly_once=False, timeout_s=10))
    first = _consume(consumer, 10)
    pipeline.commit(first, _relay(first, f"{kafka.topic_prefix}pipe-never-created"))
    second = _consume(consumer, 10)
    with pytest.raises(DeliveryError):
        pipeline.settle(second)
    again = _consume(consumer, 20)
    assert [m.offset() for m in again] == [m.offset() for m in first + second] == list(range(20))
    assert consumer.committed([TopicPartition(src, 0)], timeout=10)[0].offset < 0   # nothing committed
    pipeline.close()


class _HungClient(Producer):
    """A transactional producer whose send_offsets_to_transaction does not return, as librdkafka's
    does when the group coordinator restarts mid-transaction (librdkafka #5456), until the test
    releases it. In production the process exits and takes the hung thread with it; here the
    thread would keep this client and the consumer alive, retrying the session broker after it
    stops and logging `Connection refused` past pytest's summary."""

    def __init__(self, config: dict, released: threading.Event):
        super().__init__(config)
        self.released = released

    def send_offsets_to_transaction(self, *args, **kwargs):
        self.released.wait()
        raise RuntimeError("released by the test")


@pytest.fixture
def hung(kafka):
    released = threading.Event()
    yield _HungClient({"bootstrap.servers": kafka.bootstrap_servers, "transactional.id": f"{kafka.topic_prefix}tx",
                       # Its records stay in the client (Tansu would show an aborted transaction's).
                       "linger.ms": 30000}, released)
    released.set()


def test_a_commit_hung_in_the_client_stops_the_loop_and_its_successor_redoes_the_batch(kafka, hung):
    src = _topic_with(kafka, "pipe-hung-src", 10)
    dst = f"{kafka.topic_prefix}pipe-hung-dst"
    ensure_topics(make_admin(kafka), [TopicSpec(dst, 1, 1)])
    consumer = make_consumer(kafka, f"{kafka.topic_prefix}pipe-hung")
    consumer.assign([TopicPartition(src, 0, 0)])
    committer = BatchCommitter(consumer, hung, timeout_s=1)
    pipeline = CommitPipeline(committer, stuck_after_s=2)
    batch = _consume(consumer, 10)
    pipeline.commit(batch, _relay(batch, dst))
    started = time.monotonic()
    with pytest.raises(CommitStuck, match="has not returned in 2s"):
        pipeline.settle()
    pipeline.close()
    committer.close()                                  # abandoned: neither abort nor flush waits
    assert time.monotonic() - started < 10
    assert consumer.committed([TopicPartition(src, 0)], timeout=10)[0].offset < 0   # nothing committed

    successor = make_consumer(kafka, f"{kafka.topic_prefix}pipe-hung")
    successor.assign([TopicPartition(src, 0, 0)])
    again = CommitPipeline(BatchCommitter(successor, make_producer(kafka, transactional_id=f"{kafka.topic_prefix}tx")))
    batch = _consume(successor, 10)
    again.commit(batch, _relay(batch, dst))
    again.close()
    reader = make_consumer(kafka, "pipe-hung-reader-unused")
    reader.assign([TopicPartition(dst, 0, 0)])
    got = _consume(reader, 10) + [m for m in reader.consume(100, 1.0) if m.error() is None]
    assert [int(m.value()) for m in got] == list(range(10))
