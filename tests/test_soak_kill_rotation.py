"""Kill rotation (bin/soak): under `flywheel up` with two processes of every processor (workers,
joiners and monitors sharing partitions; triggers, rollouts and retrainers as leader and stand-by),
kill -9 each process in turn, at least five kills each, during a 100,000-request run with labels and
a concept drift (so retrains happen); the supervisor brings every one back. Checked at the end by
readers that are not Flywheel's own code path (a raw read_committed consumer decoding with fastavro,
SQL on the store file, the manifests and process logs on disk):

- one prediction per request id; Tansu's one exposed in-flight batch per worker kill (see
  test_worker_crash.py) is counted and reported separately, bounded by kills x max batch;
- one feedback row per labelled request;
- every stored monitor window equal to its recount from the raw predictions and the stored
  feedback, but for the records the monitor itself counted late (tests/soak_windows.py says
  exactly what may differ and why);
- no retrain request producing two versions;
- a trigger decision taken while its first process was dead: the trigger that led churn alone is
  held dead (killed, and every restart of it killed at once) before the drift, and the first
  retrain request must come from the other, while it was dead (`Takeover`).

Scaled by FLYWHEEL_SOAK_REQUESTS, FLYWHEEL_SOAK_KILLS, FLYWHEEL_SOAK_RATE (requests/s) and
FLYWHEEL_SOAK_INSTANCES (processes of each processor)."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from io import BytesIO
from pathlib import Path

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
from flywheel.streams.topics import TopicCatalog

from tests import soak_windows
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
WINDOW_S, LATENESS_S, MERGE_WAIT_S = 10, 2, 30
REPLAY_HEADER = "flywheel-replay"      # written by replays (streams/replay/headers.py); none in this run


def _stack_env(data_dir) -> dict:
    env = {**os.environ, "FLYWHEEL_DATA_DIR": str(data_dir),
           "FLYWHEEL_SUPERVISOR_BACKOFF_SECONDS": "0.5",
           # A held slot's restarts double the backoff: capped, so a rotation kill soon after finds it back.
           "FLYWHEEL_SUPERVISOR_MAX_BACKOFF_SECONDS": "2",
           # These exits are ours: the rotation's, and a held slot's (one every max backoff while held).
           "FLYWHEEL_SUPERVISOR_CRASH_LOOP_EXITS": "1000",
           "FLYWHEEL_WORKER_MAX_BATCH": str(MAX_BATCH),
           "FLYWHEEL_MONITOR_WINDOW_SECONDS": str(WINDOW_S),
           "FLYWHEEL_MONITOR_ALLOWED_LATENESS_SECONDS": str(LATENESS_S), "FLYWHEEL_MONITOR_IDLE_SECONDS": "5",
           "FLYWHEEL_MONITOR_MERGE_WAIT_SECONDS": str(MERGE_WAIT_S),
           "FLYWHEEL_TRIGGER_INTERVAL_SECONDS": "2", "FLYWHEEL_TRIGGER_COOLDOWN_SECONDS": "20",
           # Labels reach the trigger a minute late or more on a loaded machine (they wait for their
           # predictions): a shorter lookback would drop them before they are counted.
           "FLYWHEEL_TRIGGER_LOOKBACK_SECONDS": "120", "FLYWHEEL_TRIGGER_DATASET_SECONDS": "30",
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
    state = None
    while state is None:                  # stack.json is replaced whole, but may be briefly absent
        state = _stack_state(data_dir)
    p = next(p for p in state["processes"] if p["name"] == name)
    return p["pid"], p["restarts"]


def _alive(pid: int) -> bool:
    """Running, not exited (a zombie the supervisor has not reaped yet is exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:           # gone, or exiting while read (ESRCH)
        return False


class Hold:
    """Keeps a process slot dead: kill -9 its process, then every process the supervisor starts in
    its place, at once (before it has imported Flywheel, let alone joined a group), until released:
    a restart delayed for as long as the hold lasts."""

    def __init__(self, data_dir, name: str):
        self.data_dir, self.name, self.kills = data_dir, name, 0
        self.started_ms, self.ended_ms = int(time.time() * 1000), None
        self._last = None
        self._kill(_pid(data_dir, name)[0])
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._done.set()
        self._thread.join()
        self.ended_ms = int(time.time() * 1000)

    def _keep(self) -> None:
        while not self._done.wait(0.02):
            pid, _ = _pid(self.data_dir, self.name)
            if pid != self._last:
                self._kill(pid)

    def _kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
            self.kills += 1
        except ProcessLookupError:
            pass
        self._last = pid


LEADS = re.compile(rb"trigger leads (\d+) of (\d+) partitions of leadership")


class Takeover:
    """A trigger decision taken while the process that led the model was dead, in steps (`phase`):

    1. leader-alone: trigger-2 is held dead until trigger-1's log says it leads every partition of
       the leadership topic, so it leads churn, whichever partition that is;
    2. standby-taking: trigger-1 is killed and held dead, trigger-2 let back, until its log says it
       leads every partition;
    3. standby-leads: the concept drifts only now (`may_drift`); trigger-1 stays dead until the
       store holds a retrain request, which trigger-2 must have taken;
    4. done: trigger-1 is let back.

    The rotation leaves both triggers alone meanwhile (their kills wait)."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.phase = "waiting"
        self.standby: Hold | None = None
        self.leader: Hold | None = None
        self.led_alone: dict[str, bytes] = {}          # trigger -> its log line saying it leads every partition
        self.request: tuple[str, int] | None = None     # (retrain id, requested_at ms)
        self.dead_log = b""           # what trigger-1's slot logged while held dead
        self._marks: dict[str, int] = {}
        self._polled = 0.0

    @property
    def busy(self) -> bool:
        return self.phase not in ("waiting", "done")

    def may_drift(self) -> bool:
        return self.phase == "standby-leads"

    def log(self, name: str) -> bytes:
        path = self.data_dir / f"{name}.log"
        return path.read_bytes() if path.exists() else b""

    def tick(self) -> None:
        if self.phase == "waiting" and _alive(_pid(self.data_dir, "trigger-1")[0]):
            self._mark("trigger-1")
            self.standby = Hold(self.data_dir, "trigger-2")
            self.phase = "leader-alone"
        elif self.phase == "leader-alone" and self._leads_alone("trigger-1"):
            self.leader = Hold(self.data_dir, "trigger-1")
            self._mark("trigger-1")
            self._mark("trigger-2")
            self.standby.release()
            self.phase = "standby-taking"
        elif self.phase == "standby-taking" and self._leads_alone("trigger-2"):
            self.phase = "standby-leads"
        elif self.phase == "standby-leads" and time.monotonic() - self._polled >= 1:
            self._polled = time.monotonic()
            with sqlite3.connect(self.data_dir / "store.sqlite") as db:
                self.request = db.execute("SELECT retrain_id, requested_at FROM retrains_by_model "
                                          "WHERE model = 'churn' ORDER BY requested_at LIMIT 1").fetchone()
            if self.request:
                self.finish()

    def finish(self) -> None:
        """Let every held slot back (the request came, or the wait for it is over); once: what
        trigger-1 logs after its release is not from while it was dead."""
        if self.phase == "done":
            return
        for hold in (self.standby, self.leader):
            if hold and hold.ended_ms is None:
                hold.release()
        if self.leader:
            self.dead_log = self.log("trigger-1")[self._marks["trigger-1"]:]
        self.phase = "done"

    def _mark(self, name: str) -> None:
        self._marks[name] = len(self.log(name))

    def _leads_alone(self, name: str) -> bool:
        """Whether `name` logged, since its mark, that it leads every partition."""
        found = [m.group(0) for m in LEADS.finditer(self.log(name)[self._marks.get(name, 0):])
                 if m.group(1) == m.group(2)]
        if found:
            self.led_alone[name] = found[0]
        return bool(found)

    def leadership_while_dead(self) -> list[bytes]:
        """trigger-1's leadership lines logged while it was held dead (none: no process of its slot led)."""
        return [m.group(0) for m in LEADS.finditer(self.dead_log) if m.group(1) != b"0"]



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

    def run(self, on_tick, may_drift) -> None:
        """Drifts half-way once `may_drift()` (at three quarters regardless)."""
        started = time.monotonic()
        while len(self.ids) < REQUESTS:
            wanted = min(REQUESTS, int((time.monotonic() - started) * RATE) + 1)
            half, late = len(self.ids) >= REQUESTS // 2, len(self.ids) >= 3 * REQUESTS // 4
            if half and (may_drift() or late) and not self.concept.drifted:
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


def _raw_records(bootstrap: str, topic: str, record: str, fields: tuple[str, ...]) -> list[tuple]:
    """`fields` of every committed record in every generation of `topic` (the embedded broker's
    topic generations, kept for the run by the stack's keep_seconds) that is not a replay, read and
    decoded without Flywheel's code."""
    schema = fastavro.parse_schema(json.loads(load_schema(record)))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-reader-unused",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    generation = re.compile(rf"^{re.escape(topic)}(\.g\d{{6}})?$")
    topics = [m for name, m in consumer.list_topics(timeout=10).topics.items() if generation.match(name)]
    consumer.assign([TopicPartition(m.topic, p, OFFSET_BEGINNING) for m in topics for p in m.partitions])
    out = []
    idle = time.monotonic()
    while time.monotonic() - idle < 5:
        messages = [m for m in consumer.consume(5000, 1.0) if m.error() is None]
        if messages:
            idle = time.monotonic()
        for m in messages:
            if any(k == REPLAY_HEADER for k, _ in m.headers() or ()):
                continue
            body = BytesIO(m.value())
            body.seek(5)                                   # Confluent wire header: magic byte, schema id
            value = fastavro.schemaless_reader(body, schema, None)
            out.append(tuple(value[f] for f in fields))
    consumer.close()
    return out


def _predictions(bootstrap: str, topic: str) -> list[tuple[str, str, str, int]]:
    """(request id, model, version, predicted_at) of every live prediction record."""
    return _raw_records(bootstrap, topic, "Prediction", ("request_id", "model", "model_version", "predicted_at"))


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


def _serving(data_dir) -> bool:
    """Every process has started (its log says where its metrics are) and every worker serves v1:
    traffic sent before would wait for them, and its labels would reach the monitor behind the clock."""
    logs = [data_dir / f"{name}.log" for name in PROCESSORS]
    texts = {path.stem: path.read_text(errors="replace") if path.exists() else "" for path in logs}
    return all("metrics on" in text for text in texts.values()) and \
        all("churn serves v1" in text for name, text in texts.items() if name.startswith("worker"))


def _next_kill(data_dir, schedule: list[str], spared: bool) -> tuple[str, int, int] | None:
    """The first scheduled process that is running (one killed a moment ago may not be back yet),
    triggers left out while `spared`: (name, pid, restarts)."""
    for name in schedule:
        pid, restarts = _pid(data_dir, name)
        if _alive(pid) and not (spared and name.startswith("trigger")):
            return name, pid, restarts
    return None


def _windows_settled(data_dir, last_ms: int) -> None:
    """Until every window holding the run's records can have been merged (its end, the grace and
    the merge wait past the last record) and the stored windows stopped changing."""
    quiet_from = last_ms + (WINDOW_S + LATENESS_S + MERGE_WAIT_S + 5) * 1000
    previous, deadline = None, time.monotonic() + 180
    while time.monotonic() < deadline:
        with sqlite3.connect(data_dir / "store.sqlite") as db:
            rows = db.execute("SELECT model, model_version, window_start, metric_values FROM metrics_by_window "
                              "ORDER BY 1, 2, 3").fetchall()
        if rows == previous and time.time() * 1000 >= quiet_from:
            return
        previous = rows
        time.sleep(5)


def test_kill_rotation_under_flywheel_up(tmp_path):
    data_dir = tmp_path / "d"
    broker = free_port()
    counts = [arg for kind in KINDS for arg in (f"--{kind}s", str(INSTANCES))]
    proc = subprocess.Popen([sys.executable, "-m", "flywheel", "up", "--broker-port", str(broker),
                             "--metrics-port", str(free_port_block(len(PROCESSORS) + 6)), "--model", "churn",
                             *counts],
                            env=_stack_env(data_dir), stderr=subprocess.PIPE, text=True)
    kills: list[tuple[str, int]] = []
    # From the start of the traffic: on a loaded machine the hand-over took two minutes.
    takeover = Takeover(data_dir) if INSTANCES >= 2 else None
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
        deadline = time.monotonic() + 300
        while not _serving(data_dir):
            assert proc.poll() is None and time.monotonic() < deadline, "the stack did not start serving"
            time.sleep(1)
        traffic = Traffic(kafka, registry)

        schedule = [name for _ in range(KILLS) for name in PROCESSORS]
        every = REQUESTS / RATE / (len(schedule) + 1)

        def kill_due(elapsed: float) -> None:
            if takeover:
                takeover.tick()
            if not schedule or elapsed < every * (len(kills) + 1):
                return
            due = _next_kill(data_dir, schedule, spared=takeover is not None and takeover.busy)
            if due:
                name, pid, restarts = due
                schedule.remove(name)
                os.kill(pid, signal.SIGKILL)
                kills.append((name, restarts))
        traffic.run(kill_due, may_drift=lambda: takeover is None or takeover.may_drift())
        finishing = time.monotonic() + 180
        while takeover and takeover.busy and time.monotonic() < finishing:
            kill_due(float("inf"))
            time.sleep(0.2)
        if takeover:
            takeover.finish()
        finishing = time.monotonic() + 120
        while schedule and time.monotonic() < finishing:
            kill_due(float("inf"))                      # the kills left (a short run, or spared), now
            time.sleep(0.2)

        catalog = TopicCatalog(kafka)
        settle = time.monotonic() + 180
        while time.monotonic() < settle and proc.poll() is None:
            predictions = _predictions(kafka.bootstrap, catalog.predictions("churn"))
            predicted = Counter(p[0] for p in predictions)
            stored = _feedback_rows(data_dir)
            if set(traffic.ids) <= set(predicted) and traffic.labelled <= set(stored):
                break
            time.sleep(5)
        copies = _raw_records(kafka.bootstrap, catalog.feedback, "FeedbackRecord",
                                   ("model", "model_version", "request_id", "labelled_at", "flags"))
        _windows_settled(data_dir, max(max(p[3] for p in predictions), max(f[3] for f in copies)))
        windows = soak_windows.stored(data_dir / "store.sqlite")
        state = _stack_state(data_dir)
        gave_up = proc.poll() is not None
    finally:
        if takeover:
            takeover.finish()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    assert not gave_up, f"the stack gave up: {err[-2000:]}"

    restarts = {p["name"]: p["restarts"] for p in state["processes"]}
    missing = set(traffic.ids) - set(predicted)
    duplicated = {rid: n for rid, n in predicted.items() if n > 1}
    worker_kills = sum(1 for name, _ in kills if name.startswith("worker"))
    feedback_twice = {rid: n for rid, n in stored.items() if n > 1}
    versions = _versions_per_retrain(data_dir)
    recounted = soak_windows.recount([p[1:] for p in predictions],
                                     [f[:4] for f in copies if "replay" not in f[4]],
                                     data_dir / "store.sqlite", WINDOW_S * 1000)
    print(f"\nkill rotation: {len(traffic.ids)} requests, {len(traffic.labelled)} labelled, {len(kills)} kills "
          f"({worker_kills} of the worker); restarts {restarts}; missing predictions {len(missing)}, "
          f"request ids predicted twice {len(duplicated)} (Tansu's exposed in-flight batches, at most "
          f"{worker_kills} x {MAX_BATCH}); labelled without a feedback row {len(traffic.labelled - set(stored))}, "
          f"with two {len(feedback_twice)}; retrains that registered a version {len(versions)}, "
          f"most versions from one request {max(versions.values(), default=0)}; "
          f"windows: {soak_windows.summary(windows, recounted)}")
    problems = soak_windows.differences(windows, recounted)
    print("\n".join(problems[:10]))
    if takeover:
        print(f"takeover: led alone {takeover.led_alone}; trigger-1 held dead "
              f"from {takeover.leader and takeover.leader.started_ms} to {takeover.leader and takeover.leader.ended_ms}"
              f" ({takeover.leader and takeover.leader.kills} kills); first retrain request {takeover.request}")
    assert len(kills) == KILLS * len(PROCESSORS)
    assert all(restarts[name] >= KILLS for name in PROCESSORS), restarts
    assert not missing
    assert all(n == 2 for n in duplicated.values()) and len(duplicated) <= worker_kills * MAX_BATCH
    assert traffic.labelled <= set(stored) and not feedback_twice
    assert all(n == 1 for n in versions.values()), versions
    assert not problems, "\n".join(problems[:20])
    if takeover:
        _assert_taken_over(takeover)


def _assert_taken_over(takeover: Takeover) -> None:
    """The first retrain request came from trigger-2 while trigger-1, which had led churn alone
    before, was dead, and no process of trigger-1's slot led anything meanwhile."""
    assert set(takeover.led_alone) == {"trigger-1", "trigger-2"}, f"not led alone in turn: {takeover.led_alone}"
    assert takeover.request, "no retrain requested while trigger-1 was held dead"
    retrain_id, requested_at = takeover.request
    assert takeover.leader.started_ms <= requested_at <= takeover.leader.ended_ms, (takeover.request,
                                                                                    takeover.leader.started_ms)
    said = f"requested retrain {retrain_id} of churn".encode()
    assert said in takeover.log("trigger-2") and said not in takeover.log("trigger-1")
    assert not takeover.leadership_while_dead()
