"""Kill rotation (bin/soak): under `flywheel up` with two processes of every processor (workers,
joiners and monitors sharing partitions; triggers, rollouts and retrainers as leader and stand-by),
kill -9 each process in turn, at least five kills each, during a 100,000-request run with labels and
a concept drift (so retrains happen); the supervisor brings every one back. Checked at the end by
readers that are not Flywheel's own code path (a raw read_committed consumer decoding with fastavro,
SQL on the store file, the manifests on disk):

- one prediction per request id; Tansu's one exposed in-flight batch per worker kill (see
  test_worker_crash.py) is counted and reported separately, bounded by kills x max batch;
- one feedback row per labelled request;
- no retrain request producing two versions.

Scaled by FLYWHEEL_SOAK_REQUESTS, FLYWHEEL_SOAK_KILLS, FLYWHEEL_SOAK_RATE (requests/s) and
FLYWHEEL_SOAK_INSTANCES (processes of each processor)."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, deque
from io import BytesIO

import fastavro
import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from flywheel.processors.models import ModelRegistry
from flywheel.processors.simulator.concept import Concept
from flywheel.schemas import load_schema
from flywheel.schemas.registry import open_registry
from flywheel.streams.broker import free_port
from flywheel.streams.labels import LabelPublisher
from flywheel.streams.publisher import Publisher, Request
from flywheel.streams.settings import KafkaSettings

from tests.ports import free_port_block
from tests.retrain_helpers import register_model

pytestmark = pytest.mark.soak

REQUESTS = int(os.environ.get("FLYWHEEL_SOAK_REQUESTS", 100_000))
KILLS = int(os.environ.get("FLYWHEEL_SOAK_KILLS", 5))
RATE = float(os.environ.get("FLYWHEEL_SOAK_RATE", 400))
INSTANCES = int(os.environ.get("FLYWHEEL_SOAK_INSTANCES", 2))
KINDS = ("worker", "joiner", "monitor", "trigger", "retrainer", "rollout")
PROCESSORS = KINDS if INSTANCES == 1 else tuple(f"{kind}-{i}" for i in range(1, INSTANCES + 1) for kind in KINDS)
MAX_BATCH = 500
LABEL_SHARE = 0.9
LABEL_DELAY_S = 2.0


def _stack_env(data_dir) -> dict:
    env = {**os.environ, "FLYWHEEL_DATA_DIR": str(data_dir),
           "FLYWHEEL_SUPERVISOR_BACKOFF_SECONDS": "0.5",
           "FLYWHEEL_SUPERVISOR_CRASH_LOOP_EXITS": str(10 * KILLS + 10),   # these exits are ours
           "FLYWHEEL_WORKER_MAX_BATCH": str(MAX_BATCH),
           "FLYWHEEL_MONITOR_WINDOW_SECONDS": "10", "FLYWHEEL_MONITOR_ALLOWED_LATENESS_SECONDS": "2",
           "FLYWHEEL_MONITOR_IDLE_SECONDS": "5",
           "FLYWHEEL_TRIGGER_INTERVAL_SECONDS": "2", "FLYWHEEL_TRIGGER_COOLDOWN_SECONDS": "20",
           "FLYWHEEL_TRIGGER_LOOKBACK_SECONDS": "30", "FLYWHEEL_TRIGGER_DATASET_SECONDS": "30",
           "FLYWHEEL_TRIGGER_NEW_LABELS": "0", "FLYWHEEL_TRIGGER_MAX_AGE_SECONDS": "0",
           "FLYWHEEL_ROLLOUT_INTERVAL_SECONDS": "2", "FLYWHEEL_ROLLOUT_MIN_LABELS": "100",
           "FLYWHEEL_ROLLOUT_MAX_LABELS": "600",
           # The broker's old topic generations stay for the run, so the reader at the end sees them all.
           "FLYWHEEL_ROTATION_KEEP_SECONDS": "3600"}
    env.pop("FLYWHEEL_BOOTSTRAP", None)
    return env


def _stack_state(data_dir) -> dict | None:
    try:
        return json.loads((data_dir / "stack.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _pid(data_dir, name) -> tuple[int, int]:
    p = next(p for p in _stack_state(data_dir)["processes"] if p["name"] == name)
    return p["pid"], p["restarts"]


class Traffic:
    """Requests at RATE for REQUESTS, each labelled (LABEL_SHARE) LABEL_DELAY_S later; the
    concept drifts half-way so the loop retrains while processors are being killed."""

    def __init__(self, kafka, registry):
        self.publisher = Publisher(kafka, registry, "churn")
        self.labels = LabelPublisher(kafka, registry, source="soak")
        self.concept, self.rng = Concept(), np.random.default_rng(5)
        self.ids: list[str] = []
        self.labelled: set[str] = set()
        self._due: deque = deque()

    def run(self, on_tick) -> None:
        started = time.monotonic()
        while len(self.ids) < REQUESTS:
            wanted = min(REQUESTS, int((time.monotonic() - started) * RATE) + 1)
            if len(self.ids) >= REQUESTS // 2 and not self.concept.drifted:
                self.concept.drift()
            n = wanted - len(self.ids)
            if n > 0:
                data = self.concept.sample(n, self.rng)
                for row, truth, keep in zip(data.rows(), data.target, self.rng.random(n) < LABEL_SHARE):
                    rid = self.publisher.publish(Request(row, entity_id=f"c{self.rng.integers(0, 5000)}"))
                    self.ids.append(rid)
                    if keep:
                        self._due.append((time.monotonic() + LABEL_DELAY_S, rid, str(truth)))
            self._label(time.monotonic())
            on_tick(time.monotonic() - started)
            time.sleep(0.05)
        self.publisher.flush()
        time.sleep(LABEL_DELAY_S)
        self._label(float("inf"))
        self.labels.flush()

    def _label(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            _, rid, truth = self._due.popleft()
            self.labels.label(rid, label=truth, model="churn")
            self.labelled.add(rid)


def _predictions(bootstrap: str, topic: str) -> Counter:
    """Request ids of every committed prediction in every generation of `topic` (the embedded
    broker's topic generations, kept for the run by the stack's keep_seconds), read and decoded
    without Flywheel's code."""
    schema = fastavro.parse_schema(json.loads(load_schema("Prediction")))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-reader-unused",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    generation = re.compile(rf"^{re.escape(topic)}(\.g\d{{6}})?$")
    topics = [m for name, m in consumer.list_topics(timeout=10).topics.items() if generation.match(name)]
    consumer.assign([TopicPartition(m.topic, p, OFFSET_BEGINNING) for m in topics for p in m.partitions])
    ids: Counter = Counter()
    idle = time.monotonic()
    while time.monotonic() - idle < 5:
        messages = [m for m in consumer.consume(5000, 1.0) if m.error() is None]
        if messages:
            idle = time.monotonic()
        for m in messages:
            body = BytesIO(m.value())
            body.seek(5)                                   # Confluent wire header: magic byte, schema id
            ids[fastavro.schemaless_reader(body, schema, None)["request_id"]] += 1
    consumer.close()
    return ids


def _feedback_rows(data_dir) -> Counter:
    with sqlite3.connect(data_dir / "store.sqlite") as db:
        return Counter(dict(db.execute("SELECT request_id, COUNT(*) FROM feedback_by_request GROUP BY request_id")))


def _versions_per_retrain(data_dir) -> Counter:
    """Retrain id -> versions registered for it, from the manifests on disk."""
    out: Counter = Counter()
    for manifest in (data_dir / "models" / "churn").glob("*/manifest.json"):
        description = json.loads(manifest.read_text()).get("description", "")
        if description.startswith("retrained for "):
            out[description.rsplit("(", 1)[-1].rstrip(")")] += 1
    return out


def test_kill_rotation_under_flywheel_up(tmp_path):
    data_dir = tmp_path / "d"
    broker = free_port()
    counts = [arg for kind in KINDS for arg in (f"--{kind}s", str(INSTANCES))]
    proc = subprocess.Popen([sys.executable, "-m", "flywheel", "up", "--broker-port", str(broker),
                             "--metrics-port", str(free_port_block(len(PROCESSORS) + 6)), "--model", "churn",
                             *counts],
                            env=_stack_env(data_dir), stderr=subprocess.PIPE, text=True)
    kills: list[tuple[str, int]] = []
    try:
        deadline = time.monotonic() + 90
        while _stack_state(data_dir) is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.3)
        kafka = KafkaSettings(bootstrap=f"127.0.0.1:{broker}")
        registry = open_registry(None, data_dir)
        models = ModelRegistry(kafka, registry, data_dir, actor="soak")
        register_model(models, Concept(), "v1")
        models.close()
        traffic = Traffic(kafka, registry)

        schedule = [name for _ in range(KILLS) for name in PROCESSORS]
        every = REQUESTS / RATE / (len(schedule) + 1)

        def kill_due(elapsed: float) -> None:
            if schedule and elapsed >= every * (len(kills) + 1):
                name = schedule.pop(0)
                pid, restarts = _pid(data_dir, name)
                os.kill(pid, signal.SIGKILL)
                kills.append((name, restarts))
        traffic.run(kill_due)
        for _ in schedule:                              # a short run: the kills left, now
            kill_due(float("inf"))

        catalog_predictions = "churn.predictions"
        settle = time.monotonic() + 180
        while time.monotonic() < settle:
            predicted = _predictions(kafka.bootstrap, catalog_predictions)
            stored = _feedback_rows(data_dir)
            if set(traffic.ids) <= set(predicted) and traffic.labelled <= set(stored):
                break
            time.sleep(5)
        state = _stack_state(data_dir)
        assert proc.poll() is None, "the stack gave up"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)

    restarts = {p["name"]: p["restarts"] for p in state["processes"]}
    missing = set(traffic.ids) - set(predicted)
    duplicated = {rid: n for rid, n in predicted.items() if n > 1}
    worker_kills = sum(1 for name, _ in kills if name.startswith("worker"))
    feedback_twice = {rid: n for rid, n in stored.items() if n > 1}
    versions = _versions_per_retrain(data_dir)
    print(f"\nkill rotation: {len(traffic.ids)} requests, {len(traffic.labelled)} labelled, {len(kills)} kills "
          f"({worker_kills} of the worker); restarts {restarts}; missing predictions {len(missing)}, "
          f"request ids predicted twice {len(duplicated)} (Tansu's exposed in-flight batches, at most "
          f"{worker_kills} x {MAX_BATCH}); labelled without a feedback row {len(traffic.labelled - set(stored))}, "
          f"with two {len(feedback_twice)}; retrains that registered a version {len(versions)}, "
          f"most versions from one request {max(versions.values(), default=0)}")
    assert len(kills) == KILLS * len(PROCESSORS)
    assert all(restarts[name] >= KILLS for name in PROCESSORS), restarts
    assert not missing
    assert all(n == 2 for n in duplicated.values()) and len(duplicated) <= worker_kills * MAX_BATCH
    assert traffic.labelled <= set(stored) and not feedback_twice
    assert all(n == 1 for n in versions.values()), versions
