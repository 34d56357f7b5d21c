"""The processor base (processors/runtime/processor.py): a new, tiny processor written on it, with
nothing but its own logic, gets the failure model, metrics and shutdown by construction. On the
real embedded broker and the real SQLite store, in both commit modes: an undecodable record is a
dead letter, a locked store is backpressure (nothing committed, no exit) until it is free, the
dead-letter counter and consumer lag are on its /metrics, and a stop leaves cleanly."""
import logging
import sqlite3
import threading
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import TopicPartition
from flywheel.feature_store import OnlineFeatures, StoreSettings, open_store
from flywheel.feature_store.settings import SqliteSettings
from flywheel.processors.runtime import ProcessorMetrics
from flywheel.processors.runtime.processor import Endpoint, StreamProcessor
from flywheel.schemas import AvroSerde
from flywheel.streams.broker import free_port
from flywheel.streams.clients import make_consumer

from tests.test_joiner_process import Topics, _label
from tests.test_worker_support import wait_for

GROUP = f"latest-labels-{uuid.uuid4().hex[:8]}"


class LatestLabels(StreamProcessor):
    """Keeps each request's latest label in the store: the whole of a processor on the base."""

    name = "latest-labels"

    def __init__(self, kafka, registry, store, **parts):
        super().__init__(kafka, registry, ProcessorMetrics(), GROUP, **parts)
        self.store = self.held(store)
        self.labels = AvroSerde(registry, "GroundTruth")
        self.consumer.subscribe([self.catalog.labels])

    def step(self) -> None:
        messages = self.consume(100, 0.2)
        if messages:
            dead = []
            self.store.put_online("labels", [OnlineFeatures(v["request_id"], {"label": v["label"]}, v["labelled_at"])
                                             for _, v in self.decode(self.labels, messages, dead)])
            self.commit(messages, dead=dead)


def _committed(kafka, topic: str) -> int:
    """Records of `topic` the group has committed past, over every partition."""
    reader = make_consumer(kafka, GROUP)
    try:
        found = reader.committed([TopicPartition(topic, p) for p in range(kafka.partitions)], timeout=10)
    finally:
        reader.close()
    return sum(max(tp.offset, 0) for tp in found)


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def _lags(text: str) -> list[float]:
    """The consumer lag the endpoint shows for each partition it reads."""
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("flywheel_consumer_lag{") and 'processor="latest-labels"' in line]


@pytest.mark.parametrize("transactional_id", [f"{GROUP}-1", None], ids=["exactly-once", "at-least-once"])
def test_a_new_processor_gets_the_failure_model_metrics_and_shutdown(kafka, registry, data_dir, make_topics,
                                                                     transactional_id, caplog):
    topics = Topics(kafka, registry, make_topics())
    store = open_store(StoreSettings(sqlite=SqliteSettings(busy_timeout_ms=50)), data_dir)
    garbage = b"\xff not a label"
    topics.labels([_label(1, "yes"), _label(2, "no")], raw=[garbage])
    lock = sqlite3.connect(store.path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")                 # the store is locked: every write fails unavailable
    port = free_port()
    processor = LatestLabels(kafka, registry, store, transactional_id=transactional_id, endpoint=Endpoint(port))
    thread = threading.Thread(target=processor.run, name="latest-labels")
    caplog.set_level(logging.WARNING, logger="flywheel.failures")
    thread.start()
    try:
        # Backpressure: it retries where it stands, commits nothing, writes no dead letter, lives on.
        wait_for(lambda: sum("StoreUnavailable, holding back" in r.getMessage() for r in caplog.records) >= 3,
                 timeout=60)
        assert thread.is_alive()
        assert _committed(kafka, topics.catalog.labels) == 0
        assert topics.read(topics.catalog.deadletter, "DeadLetter", 1, timeout=2) == []
        assert store.get_online("labels", ["r1", "r2"]) == {}

        lock.execute("ROLLBACK")                    # the store is back: the batch goes through as it was
        wait_for(lambda: len(store.get_online("labels", ["r1", "r2"])) == 2, timeout=30)
        [(letter, _)] = topics.read(topics.catalog.deadletter, "DeadLetter", 1)
        assert (letter["reason"], letter["payload"], letter["processor"]) == ("undecodable", garbage, "latest-labels")
        assert {r: f.features["label"] for r, f in store.get_online("labels", ["r1", "r2"]).items()} == \
               {"r1": "yes", "r2": "no"}
        wait_for(lambda: _committed(kafka, topics.catalog.labels) == 3, timeout=30)

        # Metrics, on its own endpoint: the dead letter by reason, and no lag left once it caught up.
        assert 'flywheel_dead_letters_total{processor="latest-labels",reason="undecodable"} 1.0' in _scrape(port)
        wait_for(lambda: (lags := _lags(_scrape(port))) and set(lags) == {0.0}, timeout=30)
    finally:
        processor.stop.set()
        thread.join(30)
        lock.close()

    # Shutdown: the loop left, the endpoint is gone, the consumer has left its group.
    assert not thread.is_alive()
    with pytest.raises(urllib.error.URLError):
        _scrape(port)
    with pytest.raises(RuntimeError, match="closed"):
        processor.consumer.assignment()
    assert _committed(kafka, topics.catalog.labels) == 3
