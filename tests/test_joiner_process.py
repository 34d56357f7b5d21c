"""The joiner process against the real broker and the embedded store: every join case end to end,
dead letters with their reasons and original bytes, and a joiner killed with SIGKILL mid-stream
and restarted writing every FeedbackRecord exactly once."""
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.joiner.process import FeedbackJoiner
from flywheel.processors.joiner.settings import JoinerSettings
from flywheel.schemas import AvroSerde
from flywheel.streams.broker import free_port
from flywheel.streams.clients import make_consumer, make_producer
from flywheel.streams.replay.headers import REPLAY

from tests.test_worker_support import register

T0 = int(time.time() * 1000) - 3 * 3_600_000   # labels up to 2 h after T0 are still in the past


def _prediction(i: int, model: str = "m", version: str = "1") -> dict:
    return {"request_id": f"r{i}", "entity_id": f"e{i}", "model": model, "model_version": version,
            "event_time": T0 + i, "predicted_at": T0 + i + 10, "label": "yes" if i % 2 else "no",
            "scores": {"yes": 0.6, "no": 0.4}, "confidence": 0.6, "numeric": {"x": float(i)}}


def _label(i: int, value: str = "yes", at: int | None = None, model: str = "m") -> dict:
    return {"request_id": f"r{i}", "model": model, "label": value, "value": None,
            "labelled_at": at or T0 + i + 60_000, "source": "test"}


class Topics:
    def __init__(self, kafka, registry, catalog):
        self.catalog = catalog
        self.producer = make_producer(kafka)
        self.serde = {name: AvroSerde(registry, name) for name in
                      ("Prediction", "GroundTruth", "FeedbackRecord", "DeadLetter")}
        self.kafka = kafka

    def predictions(self, records, model="m", headers=None):
        for r in records:
            self.producer.produce(self.catalog.predictions(model), self.serde["Prediction"].encode(r),
                                  r["request_id"].encode(), headers=headers)     # as the worker keys them
        self.producer.flush(10)

    def labels(self, records, raw: list[bytes] = ()):
        for r in records:
            self.producer.produce(self.catalog.labels, self.serde["GroundTruth"].encode(r), r["request_id"].encode())
        for value in raw:
            self.producer.produce(self.catalog.labels, value, b"junk")
        self.producer.flush(10)

    def read(self, topic: str, record: str, expect: int, timeout: float = 20.0) -> list[tuple[dict, dict]]:
        consumer = make_consumer(self.kafka, "reader")
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(self.kafka.partitions)])
        out, deadline = [], time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    out.append((self.serde[record].decode(m.value()), dict(m.headers() or ())))
        consumer.close()
        return out


@pytest.fixture
def topics(kafka, registry, make_topics):
    return Topics(kafka, registry, make_topics("m"))


def _run_until(joiner: FeedbackJoiner, done, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        joiner.step()
    assert done(), "the joiner did not finish in time"


def test_joiner_joins_every_case_and_dead_letters_the_rest(kafka, registry, data_dir, topics):
    register(kafka, registry, data_dir, "m", "1").close()
    store = open_store(StoreSettings(), data_dir)
    settings = JoinerSettings(join_window_seconds=3600, early_label_wait_seconds=1.0, group_id="j1")
    joiner = FeedbackJoiner(kafka, registry, store, settings, instance="t")
    topics.labels([_label(1, at=T0)])                                   # before its prediction
    topics.predictions([_prediction(i) for i in range(1, 6)])
    topics.predictions([_prediction(6)], headers=[(REPLAY, b"run-1")])  # a replayed prediction
    topics.labels([_label(2), _label(3, "no"), _label(3, "yes", at=T0 + 120_000),   # after; replaced
                   _label(4, at=T0 + 2 * 3_600_000),                    # past the 1 h window
                   _label(99, model="client-chosen"), _label(6)],       # unknown; replay
                  raw=[b"\xffgarbage"])                                # undecodable
    stored = lambda: list(store.feedback("m", T0 - 3_600_000, T0 + 3_600_000))           # noqa: E731
    _run_until(joiner, lambda: len(stored()) == 4 and not joiner.holds)
    by_id = {f.request_id: f for f in stored()}
    assert sorted(by_id) == ["r1", "r2", "r3", "r6"]
    assert (by_id["r3"].true_label, by_id["r3"].label_count) == ("yes", 2)
    assert by_id["r6"].flags == ["replay"] and by_id["r1"].flags == []

    dead = {d["reason"]: d for d, _ in topics.read(topics.catalog.deadletter, "DeadLetter", 3)}
    assert sorted(dead) == ["late_label", "undecodable", "unknown_request"]
    assert dead["undecodable"]["payload"] == b"\xffgarbage" and dead["undecodable"]["processor"] == "joiner"
    assert topics.serde["GroundTruth"].decode(dead["unknown_request"]["payload"])["request_id"] == "r99"
    assert "r4" in dead["late_label"]["detail"] or dead["late_label"]["key"] == b"r4"

    feedback = topics.read(topics.catalog.feedback, "FeedbackRecord", 4)
    assert {f["request_id"] for f, _ in feedback} == {"r1", "r2", "r3", "r6"}
    assert all((REPLAY in h) == (f["request_id"] == "r6") for f, h in feedback)

    m = joiner.metrics.registry
    # Live figures leave the replay (r6) out.
    assert m.get_sample_value("flywheel_feedback_joined_total", {"model": "m", "version": "1"}) == 3
    assert m.get_sample_value("flywheel_labels_replaced_total", {"model": "m"}) == 1
    assert m.get_sample_value("flywheel_label_delay_seconds_count", {"model": "m"}) == 3
    assert m.get_sample_value("flywheel_dead_letters_total", {"processor": "joiner", "reason": "late_label"}) == 1
    # A model name the label's producer chose is no label value unless registered.
    records_in = {s.labels["model"] for metric in m.collect() if metric.name == "flywheel_records_in"
                  for s in metric.samples}
    assert records_in == {"m", "unregistered"}
    joiner.close()
    store.close()


def test_a_held_label_outlives_a_restart_and_joins_the_prediction_that_comes_after(kafka, registry, data_dir,
                                                                                  topics):
    """Held labels are in memory only: what brings one back after a restart is the committed
    offset, which never passes it."""
    store = open_store(StoreSettings(), data_dir)
    settings = JoinerSettings(join_window_seconds=3600, held_after_join_seconds=0.5, group_id="held")
    topics.predictions([_prediction(i) for i in range(2, 20)])
    topics.labels([_label(1, at=T0)] + [_label(i) for i in range(2, 20)])      # r1's comes before its prediction
    stored = lambda: {f.request_id: f for f in store.feedback("m", T0 - 3_600_000, T0 + 3_600_000)}   # noqa: E731
    first = FeedbackJoiner(kafka, registry, store, settings, instance="a")
    _run_until(first, lambda: len(stored()) == 18 and "r1" in first.holds)
    first.close()
    topics.predictions([_prediction(1)])
    second = FeedbackJoiner(kafka, registry, store, settings, instance="a")
    _run_until(second, lambda: "r1" in stored())
    assert (stored()["r1"].true_label, stored()["r1"].label_count) == ("yes", 1)
    # Once a held label has met its prediction it is held only briefly (not the 600 s of its wait).
    topics.labels([_label(31, at=T0)])
    _run_until(second, lambda: "r31" in second.holds)
    topics.predictions([_prediction(31)])
    _run_until(second, lambda: "r31" in stored())
    _run_until(second, lambda: "r31" not in second.holds and "r31" not in second.join.held, timeout=10)
    # Its hold goes with its partition: the partition's next owner reads the label again.
    topics.labels([_label(30, at=T0)])
    _run_until(second, lambda: "r30" in second.holds)
    held = second.holds.get("r30").message
    second._on_revoke(second.consumer, [TopicPartition(held.topic(), held.partition())])
    assert "r30" not in second.holds and "r30" not in second.join.held
    second.close()
    store.close()


def test_joiner_killed_mid_stream_writes_every_feedback_record_exactly_once(kafka, registry, data_dir, topics):
    n = 3000
    topics.predictions([_prediction(i) for i in range(n)])
    topics.labels([_label(i, "yes" if i % 3 else "no") for i in range(n)])
    env = {**os.environ, "FLYWHEEL_BOOTSTRAP": kafka.bootstrap, "FLYWHEEL_TOPIC_PREFIX": kafka.topic_prefix,
           "FLYWHEEL_DATA_DIR": str(data_dir), "FLYWHEEL_METRICS_PORT": "0",
           "FLYWHEEL_KAFKA_SESSION_TIMEOUT_MS": "6000", "FLYWHEEL_KAFKA_PARTITIONS": str(kafka.partitions),
           "FLYWHEEL_JOINER_BATCH_SIZE": "200", "FLYWHEEL_JOINER_GROUP_ID": "j-kill"}
    store = open_store(StoreSettings(), data_dir)
    count = lambda: sum(1 for _ in store.feedback("m", T0 - 3_600_000, T0 + 3_600_000))   # noqa: E731

    first = subprocess.Popen([sys.executable, "-m", "flywheel", "joiner"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while count() < n // 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    at_kill = count()
    assert 0 < at_kill < n, f"kill landed outside the stream ({at_kill} of {n} written)"

    second = subprocess.Popen([sys.executable, "-m", "flywheel", "joiner"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while count() < n and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)     # let anything redone after the restart land
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=30)
    records = list(store.feedback("m", T0 - 3_600_000, T0 + 3_600_000))
    print(f"\nkilled at {at_kill}/{n} feedback records; after restart {len(records)}")
    assert len(records) == n, stderr.decode()[-2000:]
    assert len({r.request_id for r in records}) == n
    assert all(r.label_count == 1 for r in records)
    assert all(r.true_label == ("yes" if int(r.request_id[1:]) % 3 else "no") for r in records)
    assert second.returncode == 0, stderr.decode()[-2000:]
    store.close()


def _held(port: int) -> float | None:
    """The joiner's flywheel_held_labels gauge, from its /metrics (None while it does not answer)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith("flywheel_held_labels ")),
                None)


def test_a_joiner_killed_while_holding_labels_joins_them_after_the_restart_each_once(kafka, registry, data_dir,
                                                                                      topics):
    """kill -9 a joiner holding six labels: five that met no prediction yet, and one that met
    version 1 of its request and is held on for the versions still to come. The restarted joiner
    reads them again and holds them again: each joins the predictions that come after the
    restart, one row per request and version, counted once."""
    port = free_port()
    env = {**os.environ, "FLYWHEEL_BOOTSTRAP": kafka.bootstrap, "FLYWHEEL_TOPIC_PREFIX": kafka.topic_prefix,
           "FLYWHEEL_DATA_DIR": str(data_dir), "FLYWHEEL_METRICS_PORT": str(port),
           "FLYWHEEL_KAFKA_SESSION_TIMEOUT_MS": "6000", "FLYWHEEL_KAFKA_PARTITIONS": str(kafka.partitions),
           "FLYWHEEL_JOINER_GROUP_ID": "j-held", "FLYWHEEL_JOINER_HELD_AFTER_JOIN_SECONDS": "300"}
    store = open_store(StoreSettings(), data_dir)
    rows = lambda: [(f.request_id, f.model_version, f.label_count)                     # noqa: E731
                    for f in store.feedback("m", T0 - 3_600_000, T0 + 3_600_000)]
    topics.labels([_label(i, at=T0 + i) for i in range(1, 7)])     # labelled before their predictions
    topics.predictions([_prediction(6)])

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "flywheel", "joiner"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(done, what: str, seconds: float = 180) -> None:     # a busy machine starts a process slowly
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done(), what

    first = start()
    try:
        wait(lambda: rows() == [("r6", "1", 1)] and _held(port) == 6, "the first joiner did not hold the labels")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = start()
    try:
        wait(lambda: _held(port) == 6, "the restarted joiner did not hold the labels again")
        topics.predictions([_prediction(i) for i in range(1, 6)] + [_prediction(6, version="2")])
        wait(lambda: len(rows()) == 7, f"not every held label joined after the restart: {rows()}")
        time.sleep(1.0)     # anything redone would land meanwhile
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=30)
    assert sorted(rows()) == [(f"r{i}", "1", 1) for i in range(1, 7)] + [("r6", "2", 1)], stderr.decode()[-2000:]
    store.close()


def test_the_joiner_refuses_predictions_not_copartitioned_with_labels(kafka, registry, data_dir, make_topics):
    from dataclasses import replace

    from flywheel.streams.clients import make_admin
    from flywheel.streams.errors import TopicsNotCopartitioned
    from flywheel.streams.topics import ensure_topics
    catalog = make_topics("ok")
    spec = replace(catalog.for_model("odd")[1], partitions=catalog.core()[0].partitions + 1)
    ensure_topics(make_admin(kafka), [spec])                 # odd.predictions: one partition more than labels
    with pytest.raises(TopicsNotCopartitioned, match="odd.predictions"):
        FeedbackJoiner(kafka, registry, open_store(StoreSettings(), data_dir), JoinerSettings(group_id="jc"),
                       instance="t")


def test_two_joiners_share_the_partitions_as_one_group_without_fencing_each_other(kafka, registry, data_dir,
                                                                                  topics):
    store = open_store(StoreSettings(), data_dir)
    settings = JoinerSettings(join_window_seconds=3600, group_id="pair")
    joiners = [FeedbackJoiner(kafka, registry, store, settings, instance=name) for name in ("a", "b")]
    deadline = time.monotonic() + 60
    while not all(j.consumer.assignment() for j in joiners) and time.monotonic() < deadline:
        for joiner in joiners:
            joiner.step()
    assert all(j.consumer.assignment() for j in joiners)         # both take part
    topics.predictions([_prediction(i) for i in range(40)])
    topics.labels([_label(i) for i in range(40)])
    stored = lambda: list(store.feedback("m", T0 - 3_600_000, T0 + 3_600_000))     # noqa: E731
    deadline = time.monotonic() + 60
    while len(stored()) < 40 and time.monotonic() < deadline:
        for joiner in joiners:
            joiner.step()
    assert sorted(f.request_id for f in stored()) == sorted(f"r{i}" for i in range(40))
    assert all(f.label_count == 1 for f in stored())
    feedback = topics.read(topics.catalog.feedback, "FeedbackRecord", 40)
    assert sorted(f["request_id"] for f, _ in feedback) == sorted(f"r{i}" for i in range(40))   # both committed
    for joiner in joiners:
        joiner.close()
