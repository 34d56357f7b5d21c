"""Shared helpers of the worker and model tests (no tests here): small trained models, a worker
running in a thread, and read_committed readers of whole topics."""
import threading
import time
from dataclasses import replace
from functools import lru_cache

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from processors.models import ModelRegistry
from processors.training import synthetic, train
from processors.worker import InferenceWorker, WorkerMetrics, WorkerSettings
from schemas import AvroSerde
from streams.clients import make_consumer


@lru_cache(maxsize=None)
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


class RunningWorker:
    def __init__(self, kafka, registry, data_dir, online=None, **settings):
        settings.setdefault("instance_id", "test-worker")
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
