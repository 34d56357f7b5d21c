"""The retrain trigger: every `interval_seconds`, for every model the `models` topic names, read
what the store knows (the live version's monitor windows and labelled feedback, the model's
retrain bookkeeping), apply the policy, and when it says so emit RetrainRequested on `retrain`.

Bookkeeping comes first: the request is written to the store as in flight (with the model's
last-request time, which the cooldown reads) before it is produced, so a crash in between leaves a
request the store knows about rather than one it does not; a produce that fails marks it failed.
A request in flight longer than `in_flight_timeout_seconds` is marked failed, so a retrainer that
died does not block the loop forever. `flywheel retrain` uses the same `Requester` once.
"""
import logging
import threading
from dataclasses import dataclass, field

from prometheus_client import Counter

from feature_store import FeatureStore, RetrainRecord, WindowMetrics, retrying, wall_clock_ms
from processors.joiner.join import REPLAY_FLAG
from processors.models.follower import ModelFollower
from processors.monitor.performance import performance
from processors.runtime import ProcessorMetrics
from processors.trigger.detector import ErrorStreams
from processors.trigger.policy import (Decision, ModelState, TriggerSettings, decide, hard_example,
                                       retrain_request)
from schemas import AvroSerde
from schemas.registry.base import SchemaRegistry
from streams.clients import make_producer
from streams.delivery import TrackedProducer
from streams.settings import KafkaSettings
from streams.topics import TopicCatalog

PROCESSOR = "trigger"
log = logging.getLogger(__name__)


class TriggerMetrics(ProcessorMetrics):
    def __post_init__(self):
        super().__post_init__()
        self.requests = Counter("flywheel_retrain_requests", "Retrain requests emitted, one per reason",
                                ["model", "reason"], registry=self.registry)


@dataclass
class LiveVersion:
    version: str | None = None
    since_ms: int | None = None      # when it became live (as far as the `models` topic remembers)


@dataclass
class LiveVersions:
    """Which version of each model is live and since when, from ModelEvents in order."""
    models: dict[str, LiveVersion] = field(default_factory=dict)

    def apply(self, events: list[dict]) -> None:
        for event in events:
            current = self.models.setdefault(event["model"], LiveVersion())
            if event.get("live_version") != current.version:
                current.version, current.since_ms = event.get("live_version"), event["at"]


def drift_history(windows: list[WindowMetrics]) -> tuple[list[bool], int | None]:
    """Flags of the judged windows (oldest first; a window carried into the next one was not judged)
    and the start of the trailing flagged run."""
    judged = [w for w in windows if "drift_flagged" in w.values]
    return [bool(w.values["drift_flagged"]) for w in judged], flagged_run_start(judged)


def flagged_run_start(windows: list[WindowMetrics]) -> int | None:
    """Start of the first window of the trailing run of flagged windows (None: the last is not flagged)."""
    since = None
    for w in reversed(windows):
        if not w.values["drift_flagged"]:
            break
        since = w.window_start
    return since


class Requester:
    """Gathers a model's state, decides, and emits. No loop: the process and the CLI drive it."""

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, store: FeatureStore,
                 settings: TriggerSettings, metrics: TriggerMetrics | None = None, clock=wall_clock_ms,
                 stop: threading.Event | None = None):
        self.store, self.settings, self.clock = store, settings, clock
        self.metrics = metrics or TriggerMetrics()
        self.stop = stop or threading.Event()
        self.topic = TopicCatalog(kafka).retrain
        self._serde = AvroSerde(registry, "RetrainRequested")
        self._out = TrackedProducer(make_producer(kafka))
        self.errors = ErrorStreams(settings.change_delta)   # rebuilt from the store's lookback after a restart

    def state(self, model: str, live: LiveVersion) -> ModelState:
        now, s = self.clock(), self.settings
        version = live.version
        state = ModelState(model, version, live.since_ms)
        state.in_flight, state.last_request_ms = self._bookkeeping(model, now)
        if version is None:
            return state
        lookback = now - int(s.lookback_seconds * 1000)
        windows = self._read(lambda: list(self.store.metrics(model, version, lookback, now)))
        state.flagged_windows, state.flagged_since = drift_history(windows)
        feedback = self._read(lambda: [f for f in self.store.feedback(model, lookback, now, version)
                                       if REPLAY_FLAG not in f.flags])
        records = [vars(f) for f in feedback]
        state.performance = performance(records)
        if s.change_delta:
            state.change = self.errors.observe(model, version, feedback, lookback)
        state.hard_examples = sum(hard_example(r, s.low_confidence) for r in records)
        since = max(state.last_request_ms or 0, live.since_ms or 0)
        state.new_labels = sum(1 for f in feedback if f.labelled_at >= since)
        return state

    def evaluate(self, model: str, live: LiveVersion, manual: bool = False,
                 requested_by: str = "trigger") -> tuple[Decision, dict | None]:
        """Decide for one model; emit and record the request if the policy says so."""
        state = self.state(model, live)
        now = self.clock()
        decision = decide(state, self.settings, now, manual=manual)
        if not decision.request:
            return decision, None
        request = retrain_request(state, decision, self.settings, now, requested_by)
        self.emit(request)
        return decision, request

    def emit(self, request: dict) -> None:
        model, now = request["model"], request["requested_at"]
        record = RetrainRecord(model, request["retrain_id"], "in_flight", now, now,
                               base_version=request["base_version"], reasons=list(request["reasons"]))
        self._write(lambda: self.store.put_retrain(record))
        self._write(lambda: self.store.put_last_retrain(model, now))
        try:
            self._out.produce(self.topic, self._serde.encode(request), model.encode())
            self._out.flush()
        except Exception as e:
            record.status, record.detail, record.updated_at = "failed", f"not delivered: {e}", self.clock()
            self._write(lambda: self.store.put_retrain(record))
            raise
        for reason in request["reasons"]:
            self.metrics.requests.labels(model, reason).inc()
        log.info("requested retrain %s of %s: %s", request["retrain_id"], model, ", ".join(request["reasons"]))

    def _bookkeeping(self, model: str, now: int) -> tuple[bool, int | None]:
        """(a request is in flight, when the last one was made); stale requests are marked failed."""
        timeout_ms = int(self.settings.in_flight_timeout_seconds * 1000)
        in_flight = False
        for r in self._read(lambda: self.store.retrains(model)):
            if r.status != "in_flight":
                continue
            if now - r.requested_at > timeout_ms:
                r.status, r.updated_at = "failed", now
                r.detail = f"no outcome after {self.settings.in_flight_timeout_seconds:g}s"
                self._write(lambda: self.store.put_retrain(r))
            else:
                in_flight = True
        return in_flight, self._read(lambda: self.store.last_retrain(model))

    def _read(self, call):
        return retrying(call, stop=self.stop)

    _write = _read


class RetrainTrigger:
    """The long-running process: follow `models`, evaluate every model every interval."""

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, store: FeatureStore,
                 settings: TriggerSettings, metrics: TriggerMetrics | None = None,
                 stop: threading.Event | None = None, clock=wall_clock_ms):
        self.settings = settings
        self.stop = stop or threading.Event()
        self.requester = Requester(kafka, registry, store, settings, metrics, clock, self.stop)
        self.live = LiveVersions()
        self._models = ModelFollower(kafka, registry)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
                self.stop.wait(self.settings.interval_seconds)
        finally:
            self._models.close()

    def step(self) -> list[dict]:
        """Catch up on model events, then evaluate every model; return the requests emitted."""
        self.live.apply(self._models.catch_up(timeout=5.0))
        emitted = []
        for model, live in sorted(self.live.models.items()):
            _, request = self.requester.evaluate(model, live)
            if request:
                emitted.append(request)
        return emitted
