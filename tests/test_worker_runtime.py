"""The shared processor plumbing against the real broker: the exactly-once commit protocol
(commit, abort + rewind, a restarted instance fencing a killed one's open transaction), dead
letters keeping original bytes and headers, and the metrics endpoint."""
import os
import time
import urllib.request

import pytest
from confluent_kafka import TopicPartition
from flywheel.processors.runtime import BatchCommitter, DeadLetterWriter, ProcessorMetrics, start_metrics_server
from flywheel.schemas import AvroSerde
from flywheel.streams.broker import free_port
from flywheel.streams.clients import make_admin, make_consumer, make_producer
from flywheel.streams.topics import TopicSpec, ensure_topics


def _topics(kafka, *names):
    ensure_topics(make_admin(kafka), [TopicSpec(f"{kafka.topic_prefix}{n}", 1, 1) for n in names])
    return [f"{kafka.topic_prefix}{n}" for n in names]


def _read_all(kafka, topic, expect, timeout=10.0):
    c = make_consumer(kafka, "reader-unused")
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        out += [m for m in c.consume(1000, 0.2) if m.error() is None]
    # a little more, to see anything that should not be there
    out += [m for m in c.consume(1000, 0.5) if m.error() is None]
    c.close()
    return out


def _passthrough_batch(kafka, src, dst, tid, group, abort=False):
    consumer = make_consumer(kafka, group)
    consumer.assign([TopicPartition(src, 0, 0)])
    committer = BatchCommitter(consumer, make_producer(kafka, transactional_id=tid))
    batch = []
    while len(batch) < 10:
        batch += [m for m in consumer.consume(10 - len(batch), 1.0) if m.error() is None]
    committer.begin()
    for m in batch:
        committer.produce(dst, m.value(), m.key())
    if abort:
        committer.abort(batch)
        again = []
        while len(again) < 10:
            again += [m for m in consumer.consume(10 - len(again), 1.0) if m.error() is None]
        return [m.offset() for m in again]
    committer.commit(batch)
    committed = consumer.committed([TopicPartition(src, 0)], timeout=10)[0].offset
    consumer.close()
    return committed


def test_commit_abort_and_rewind(kafka):
    src, dst = _topics(kafka, "src", "dst")
    p = make_producer(kafka)
    for i in range(10):
        p.produce(src, f"v{i}".encode(), f"k{i}".encode())
    p.flush(10)
    # aborted: nothing visible, and the consumer is back at the batch's first offset
    assert _passthrough_batch(kafka, src, dst, f"{kafka.topic_prefix}tx", f"{kafka.topic_prefix}g", abort=True) \
        == list(range(10))
    assert _read_all(kafka, dst, 0, timeout=1.0) == []
    assert _passthrough_batch(kafka, src, dst, f"{kafka.topic_prefix}tx", f"{kafka.topic_prefix}g") == 10
    assert [m.value() for m in _read_all(kafka, dst, 10)] == [f"v{i}".encode() for i in range(10)]


@pytest.mark.xfail(not os.environ.get("FLYWHEEL_BOOTSTRAP"), strict=False,
                   reason="Tansu 0.6 shows an aborted transaction's records to read_committed readers; "
                          "the worker's producer keeps records in the client until commit to avoid it")
def test_restart_with_same_transactional_id_aborts_the_killed_ones_open_transaction(kafka):
    (dst,) = _topics(kafka, "dst")
    tid = f"{kafka.topic_prefix}tx"
    dead = make_producer(kafka, transactional_id=tid)
    dead.init_transactions(10)
    dead.begin_transaction()
    dead.produce(dst, b"half-done")
    dead.flush(10)  # written but never committed: the process "dies" here
    fresh = make_producer(kafka, transactional_id=tid)
    fresh.init_transactions(10)
    fresh.begin_transaction()
    fresh.produce(dst, b"after-restart")
    fresh.commit_transaction(10)
    assert [m.value() for m in _read_all(kafka, dst, 1)] == [b"after-restart"]


def test_restart_with_same_transactional_id_unblocks_readers(kafka):
    """What holds on every broker: the restarted instance fences the killed one, so a killed
    worker's open transaction does not hold read_committed readers back."""
    (dst,) = _topics(kafka, "dst")
    tid = f"{kafka.topic_prefix}tx"
    dead = make_producer(kafka, transactional_id=tid)
    dead.init_transactions(10)
    dead.begin_transaction()
    dead.produce(dst, b"half-done")
    dead.flush(10)
    assert _read_all(kafka, dst, 0, timeout=0.5) == []      # open: held back
    fresh = make_producer(kafka, transactional_id=tid)
    fresh.init_transactions(10)
    fresh.begin_transaction()
    fresh.produce(dst, b"after-restart")
    fresh.commit_transaction(10)
    assert b"after-restart" in [m.value() for m in _read_all(kafka, dst, 1)]


def test_dead_letter_keeps_original_bytes_and_headers(kafka, registry):
    src, dl = _topics(kafka, "src", "deadletter")
    p = make_producer(kafka)
    p.produce(src, b"\xff\x00garbage", b"key-1", headers=[("flywheel-replay", b"run-7")])
    p.flush(10)
    (msg,) = _read_all(kafka, src, 1)
    metrics = ProcessorMetrics()
    serde = AvroSerde(registry, "DeadLetter")
    writer = DeadLetterWriter(serde, dl, "test", metrics.dead_letters)
    out = make_producer(kafka)
    writer.send_message(out, msg, "undecodable", "bad magic byte")
    out.flush(10)
    (got,) = _read_all(kafka, dl, 1)
    record = serde.decode(got.value())
    assert (record["reason"], record["payload"], record["key"]) == ("undecodable", b"\xff\x00garbage", b"key-1")
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == (src, 0, 0)
    assert record["headers"] == {"flywheel-replay": b"run-7"}
    assert dict(got.headers()) == {"flywheel-replay": b"run-7"}
    port = free_port()
    start_metrics_server(port, metrics.registry)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'flywheel_dead_letters_total{processor="test",reason="undecodable"} 1.0' in text
