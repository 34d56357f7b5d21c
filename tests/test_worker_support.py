"""Shared helpers of the worker and model tests (no tests here): small trained models, a worker
running in a thread, and read_committed readers of whole topics."""
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from functools import cache
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from flywheel.processors.models import ModelRegistry
from flywheel.processors.training import synthetic, train
from flywheel.processors.worker.metrics import WorkerMetrics
from flywheel.processors.worker.settings import WorkerSettings
from flywheel.processors.worker.worker import InferenceWorker
from flywheel.schemas import AvroSerde
from flywheel.streams.clients import make_consumer, make_producer


@cache
def small_model(version: str = "v1", seed: int = 0, categories: tuple = (), unknown_bucket: str | None = None,
                task: str = "classifier", low_confidence: float = 0.0):
    """A quick MLP (8 numeric features) trained on synthetic data: (onnx bytes, manifest, dataset)."""
    data = synthetic(1500, n_numeric=8, categories=dict(categories), seed=seed, task=task,
                     unknown_bucket=unknown_bucket)
    t = train("m", version, data.numeric, data.target, data.spec, data.categorical, kind="mlp", task=task,
              hidden=(16,), max_iter=30, seed=seed, low_confidence=low_confidence)
    return t.onnx_bytes, t.manifest, data


def register(kafka, registry, data_dir, model: str, version: str = "v1", **kwargs) -> ModelRegistry:
    onnx, manifest, _ = small_model(version, **kwargs)
    models = ModelRegistry(kafka, registry, data_dir, actor="test")
    models.register(onnx, replace(manifest, model=model, version=version))
    return models


BAD_EVERY = 97


def stream_requests(kafka, registry, topic: str, total: int, seconds: float, serving: threading.Event,
                    halfway: threading.Event | None = None) -> tuple[list[str], int]:
    """Publish `total` requests, the first tenth at once, the rest over about `seconds` once the
    worker is serving (`halfway` is set when half are sent); every BAD_EVERY-th is undecodable bytes."""
    serde = AvroSerde(registry, "InferenceRequest")
    rows = small_model()[2].rows(0, 200)
    out = make_producer(kafka)
    ids, bad = [], 0
    chunk = max(1, total // max(1, int(seconds * 20)))
    for i in range(total):
        if i % BAD_EVERY == BAD_EVERY - 1:
            out.produce(topic, b"\x00\x00\x00\x00\x01 not a request " + str(i).encode(), f"e{i % 50}".encode())
            bad += 1
        else:
            row = rows[i % len(rows)]
            record = {"request_id": f"r{i}", "entity_id": f"e{i % 50}", "model": "m",
                      "event_time": int(time.time() * 1000), "numeric": row, "categorical": {}, "dense": None,
                      "metadata": {}}
            out.produce(topic, serde.encode(record), f"e{i % 50}".encode())
            ids.append(f"r{i}")
        if i == total // 10:
            out.flush(30)
            serving.wait(60)
        if i == total // 2 and halfway is not None:
            out.flush(30)
            halfway.set()
        if i > total // 10 and i % chunk == 0:
            out.poll(0)
            time.sleep(seconds / (total / chunk))
    out.flush(30)
    return ids, bad


def worker_process(config, instance_id: str) -> subprocess.Popen:
    """A worker process of this test's own consumer group, logging to `log_of(config)` (a pipe
    nobody reads would fill up and stop it mid-write, as a broker outage's client errors do)."""
    env = {**os.environ, "FLYWHEEL_BOOTSTRAP": config.kafka.bootstrap,
           "FLYWHEEL_TOPIC_PREFIX": config.kafka.topic_prefix,
           "FLYWHEEL_DATA_DIR": str(config.data_dir), "FLYWHEEL_METRICS_PORT": "0",
           "FLYWHEEL_KAFKA_SESSION_TIMEOUT_MS": "6000",
           "FLYWHEEL_WORKER_GROUP_ID": f"{config.kafka.topic_prefix}worker"}
    with open(log_of(config), "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "flywheel", "worker", "--instance-id", instance_id,
                                 "--max-batch", "500"], env=env, stdout=subprocess.DEVNULL, stderr=log)


def log_of(config) -> Path:
    return config.data_dir / "worker-process.log"


def _log_tail(config) -> str:
    return log_of(config).read_text(errors="replace")[-2000:]


BROKER_COMING_BACK = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                      KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN)


def committed_count(kafka, topic) -> int:
    """Records on the topic (high watermarks); 0 while the broker cannot say (a restarted Apache
    Kafka answers NOT_LEADER_FOR_PARTITION until its partitions have leaders again)."""
    c = make_consumer(kafka, "counter-unused")
    try:
        meta = c.list_topics(topic, timeout=5).topics[topic]
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in meta.partitions)
    except KafkaException as e:
        if e.args[0].code() not in BROKER_COMING_BACK:
            raise
        return 0
    finally:
        c.close()


class RunningWorker:
    def __init__(self, kafka, registry, data_dir, online=None, **settings):
        settings.setdefault("instance_id", "test-worker")
        # One group per test (its topic prefix is unique): a group shared across the session's tests
        # makes each join wait for members an earlier test left behind.
        settings.setdefault("group_id", f"{kafka.topic_prefix}worker")
        self.settings = WorkerSettings(**settings)
        self.metrics = WorkerMetrics()
        self.worker = InferenceWorker(self.settings, kafka, registry, data_dir, self.metrics, online=online)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self) -> InferenceWorker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc) -> None:
        self.worker.stop.set()
        self.thread.join(30)


def read_topic(kafka, registry, topic: str, record_name: str, expect: int, timeout: float = 30.0,
               settle: float = 0.5) -> list[tuple[dict, object]]:
    """Every committed record of a topic from the beginning, decoded, with its message: waits for
    `expect` records, then `settle` seconds more to catch any extra."""
    serde = AvroSerde(registry, record_name)
    consumer = make_consumer(kafka, "reader-unused")
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        out += [m for m in consumer.consume(5000, 0.2) if m.error() is None]
    end = time.monotonic() + settle
    while time.monotonic() < end:
        out += [m for m in consumer.consume(5000, 0.1) if m.error() is None]
    consumer.close()
    return [(serde.decode(m.value()), m) for m in out]


def wait_for(predicate, timeout: float = 20.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def _stop(proc, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it does not stop in time (its returncode then says so)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def assert_one_exposed_batch(copies: dict, killed_at: int, max_batch: int, what: str) -> None:
    """The duplicated `what` (key -> the times of its copies) are one in-flight batch that Tansu
    exposed instead of aborting (a killed or cut-off instance's last): each written twice, once on
    each side of `killed_at`. A batch holds predictions and dead letters alike, so both may repeat."""
    assert len(copies) <= max_batch, f"{len(copies)} {what} duplicated: more than one batch"
    for key, times in copies.items():
        assert len(times) == 2, f"{what} {key} written {len(times)} times"
        assert min(times) <= killed_at <= max(times), f"{what} {key}: both copies on one side of the kill"


def assert_once_each(records, key, at, disrupted_at: int, what: str) -> None:
    """Every key once; on Tansu, apart from one exposed batch straddling the disruption."""
    times: dict = {}
    for record, _ in records:
        times.setdefault(key(record), []).append(at(record))
    copies = {k: t for k, t in times.items() if len(t) > 1}
    if copies and not os.environ.get("FLYWHEEL_BOOTSTRAP"):
        assert_one_exposed_batch(copies, disrupted_at, max_batch=500, what=what)
    else:
        assert not copies, f"{len(copies)} {what} written more than once"


def run_disrupted_stream(config, registry, catalog, total: int, seconds: float, disrupt, instance_id: str) -> None:
    """Stream `total` requests (every BAD_EVERY-th undecodable) to a worker process of model "m";
    once it answers and half are sent, `disrupt(worker)` strikes mid-stream and returns the process that
    serves from then on. A worker that exits because its Kafka client hung in a commit
    (CommitStuck) is restarted, as `flywheel up` would: that is allowed on Apache Kafka only
    (librdkafka #5456). Then: the serving process is still running and stops cleanly, every
    request has exactly one committed prediction (on Tansu, apart from one exposed batch
    straddling the disruption), and every bad record exactly one dead letter."""
    kafka = config.kafka
    result = {}
    serving, halfway = threading.Event(), threading.Event()
    publishing = threading.Thread(target=lambda: result.update(zip(("ids", "bad"), stream_requests(
        kafka, registry, catalog.requests("m"), total, seconds, serving, halfway))))
    workers = [worker_process(config, instance_id)]
    restarts = []
    publishing.start()
    try:
        wait_for(lambda: committed_count(kafka, catalog.predictions("m")) > 0, timeout=60)
        serving.set()
        assert halfway.wait(60), "the stream did not get half way"
        disrupted_at = int(time.time() * 1000)
        workers.append(disrupt(workers[-1]))
        publishing.join()
        ids, bad = result["ids"], result["bad"]

        def answered() -> bool:
            if workers[-1].poll() is not None and "has not returned in" in _log_tail(config):  # CommitStuck
                restarts.append(workers[-1].returncode)
                workers.append(worker_process(config, instance_id))
            return committed_count(kafka, catalog.predictions("m")) >= len(ids)
        wait_for(answered, timeout=300, every=0.5)
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", len(ids), timeout=60)
        letters = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", bad, timeout=30)
        assert workers[-1].poll() is None, f"the worker exited: {_log_tail(config)}"
    finally:
        for proc in workers:
            _stop(proc)
    assert workers[-1].returncode == 0, _log_tail(config)
    assert not restarts or os.environ.get("FLYWHEEL_BOOTSTRAP"), "a commit hung on the embedded broker"
    answered_ids = {p["request_id"] for p, _ in predictions}
    assert answered_ids == set(ids), f"{len(set(ids) - answered_ids)} request(s) never answered"
    assert_once_each(predictions, lambda p: p["request_id"], lambda p: p["predicted_at"], disrupted_at,
                     "predictions")
    assert len({(d["source_partition"], d["source_offset"]) for d, _ in letters}) == bad
    assert_once_each(letters, lambda d: (d["source_partition"], d["source_offset"]), lambda d: d["failed_at"],
                     disrupted_at, "dead letters")
