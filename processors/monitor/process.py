"""The monitor process: every model's predictions and the joined feedback in; per model version
and tumbling window, drift, data quality and live performance out, to the store (one
WindowMetrics row per window) and to Prometheus gauges.

Offsets are committed at-least-once, and never past the first record an open window still
holds, so a restart recomputes open windows from their records instead of losing them. Records
marked as replays (`flywheel-replay` header, or feedback flagged `replay`) are not live traffic
and are left out of every figure. Reference profiles are read from the store per model version
and cached; a version without one gets performance figures but no drift or quality.
"""
import logging
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from confluent_kafka import KafkaException, Message, TopicPartition
from prometheus_client import Counter as CounterMetric, Gauge

from feature_store import FeatureStore, WindowMetrics, wall_clock_ms
from processors.joiner.join import REPLAY_FLAG
from processors.models import ModelFollower
from processors.monitor.drift import DriftThresholds
from processors.monitor.profile import Profile, ProfileError
from processors.monitor.quality import QualityThresholds
from processors.monitor.windows import Offsets, WindowedMonitor, WindowResult
from processors.runtime import DeadLetterWriter, LagTracker, ProcessorMetrics
from processors.runtime.budget import check_output_topics
from processors.runtime.failures import hold_back, run_batches
from schemas import AvroSerde, DecodeFailure
from schemas.registry.base import SchemaRegistry
from schemas.wire.prediction import PredictionDecoder
from streams.clients import make_admin, make_consumer, make_producer
from streams.delivery import TrackedProducer
from streams.replay import headers as replay_headers
from streams.settings import KafkaSettings
from streams.topics import TopicCatalog

PROCESSOR = "monitor"
log = logging.getLogger(__name__)


@dataclass
class MonitorSettings:
    """TOML [monitor], env FLYWHEEL_MONITOR_<FIELD>."""
    window_seconds: float = 3600.0          # seconds in a demo, hours in production
    grace_seconds: float = 30.0             # how long a window waits for stragglers after its end
    group_id: str = "flywheel-monitor"
    batch_size: int = 5000
    poll_timeout_seconds: float = 0.5
    reference_refresh_seconds: float = 30.0  # how soon a missing reference profile is looked for again
    psi_threshold: float = 0.2
    false_alarms_per_day: float = 0.1       # expected drift flags a day per model on undrifted traffic
    min_count: int = 100                    # rows a window is judged on (smaller ones are carried over)
    bins: int = 10
    missing_rate: float = 0.05
    out_of_range: float = 0.01
    unseen_category: float = 0.01
    volume_low: float = 0.2
    volume_high: float = 5.0

    def drift(self) -> DriftThresholds:
        return DriftThresholds(self.psi_threshold, self.false_alarms_per_day, self.window_seconds,
                               self.min_count, self.bins)

    def quality(self) -> QualityThresholds:
        return QualityThresholds(self.missing_rate, self.out_of_range, self.unseen_category,
                                 self.volume_low, self.volume_high)


class MonitorMetrics(ProcessorMetrics):
    def __post_init__(self):
        super().__post_init__()
        r = self.registry
        self.drift = Gauge("flywheel_drift", "Drift statistic of the last closed window",
                           ["model", "version", "feature", "statistic"], registry=r)
        self.drift_flagged = Gauge("flywheel_drift_flagged", "1 if the last closed window was flagged as drifted",
                                   ["model", "version"], registry=r)
        self.quality = Gauge("flywheel_data_quality", "Data-quality figure of the last closed window",
                             ["model", "version", "feature", "rule"], registry=r)
        self.performance = Gauge("flywheel_model_performance", "Live performance over the last closed window",
                                 ["model", "version", "metric"], registry=r)
        self.labelled = Gauge("flywheel_labelled_examples", "Labelled examples behind the last window's performance",
                              ["model", "version"], registry=r)
        self.late = CounterMetric("flywheel_monitor_late_records", "Records for an already closed window (folded "
                                  "into the oldest open one, never into the closed one)", ["model", "version"],
                                  registry=r)

    def show(self, result: WindowResult, m: str, v: str) -> None:
        """The window's figures under metric label values (m, v): its model and version if
        registered, else "unknown" (see ModelFollower.label_values)."""
        for d in result.drift:
            for statistic, value in d.statistics.items():
                self.drift.labels(m, v, d.feature, statistic).set(value)
        if result.drift:        # judged: a window carried into the next one changes nothing yet
            self.drift_flagged.labels(m, v).set(float(result.drift_flagged))
        for q in result.quality:
            self.quality.labels(m, v, q.feature, q.rule).set(q.value)
        self.labelled.labels(m, v).set(result.labelled)
        self.late.labels(m, v).inc(result.late)
        if result.performance:
            for metric, value in result.performance.metrics.items():
                self.performance.labels(m, v, metric).set(value)


def window_row(result: WindowResult, closed_at: int) -> WindowMetrics:
    """The stored window; `closed_at` is when its figures (and any drift flag) came to exist."""
    return WindowMetrics(result.model, result.version, result.start_ms, result.end_ms, result.metrics(), {
        "closed_at": closed_at, "has_reference": result.has_reference, "flagged_features": result.flagged_features,
        "drift": [asdict(d) for d in result.drift], "quality": [asdict(q) for q in result.quality],
        "performance": asdict(result.performance) if result.performance else None})


class Monitor:
    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, store: FeatureStore,
                 settings: MonitorSettings, metrics: MonitorMetrics | None = None,
                 stop: threading.Event | None = None, clock=wall_clock_ms):
        self.settings = settings
        self.store = store
        self.catalog = TopicCatalog(kafka)
        self.metrics = metrics or MonitorMetrics()
        self.stop = stop or threading.Event()
        self.clock = clock
        self.windows = WindowedMonitor(int(settings.window_seconds * 1000), int(settings.grace_seconds * 1000),
                                       self.reference, settings.drift(), settings.quality(), self._closed_until)
        self._decoder = PredictionDecoder(AvroSerde(registry, "Prediction"))
        self._feedback = AvroSerde(registry, "FeedbackRecord")
        self._dead = DeadLetterWriter(AvroSerde(registry, "DeadLetter"), self.catalog.deadletter, PROCESSOR,
                                      self.metrics.dead_letters, kafka.max_message_bytes)
        self.consumer = make_consumer(kafka, settings.group_id, **{"topic.metadata.refresh.interval.ms": 5000})
        self.producer = TrackedProducer(make_producer(kafka))
        self.admin, self.max_message_bytes = make_admin(kafka), kafka.max_message_bytes
        self.lag = LagTracker(self.consumer, self.metrics.consumer_lag, PROCESSOR)
        self._references: dict[tuple[str, str], tuple[Profile | None, float]] = {}
        self._next: dict[tuple[str, int], int] = {}
        self.closed: list[WindowResult] = []      # the most recent results, for callers and tests
        self._models = ModelFollower(kafka, registry)
        self._models.catch_up()
        self.consumer.subscribe([self.catalog.feedback, self.catalog.predictions_pattern()],
                                on_revoke=self._on_revoke)

    def run(self) -> None:
        try:
            hold_back(lambda: check_output_topics(self.admin, [self.catalog.deadletter], self.max_message_bytes),
                      self.stop, PROCESSOR)
            run_batches(self.step, self.stop, PROCESSOR)
        finally:
            self.close()

    def step(self) -> list[WindowResult]:
        messages = [m for m in self.consumer.consume(self.settings.batch_size, self.settings.poll_timeout_seconds)
                    if m.error() is None]
        dead = self._add(messages)
        now = self.clock()
        results = self.windows.close_due(now)
        if results:
            hold_back(lambda: self.store.put_metrics([window_row(r, now) for r in results]), self.stop, PROCESSOR)
            # Then mark them closed, before any offset past their records is committed.
            ends = {}
            for r in results:
                ends[(r.model, r.version)] = max(r.end_ms, ends.get((r.model, r.version), r.end_ms))
            for (model, version), end in ends.items():
                hold_back(lambda: self.store.put_closed_until(model, version, end), self.stop, PROCESSOR)
            self._models.poll(0)
            for r in results:
                self.metrics.show(r, *self._models.label_values(r.model, r.version))
            self.closed = (self.closed + results)[-1000:]
        if messages or results:
            self._commit(dead)
        self.lag.update()
        return results

    def close(self) -> None:
        try:
            self.producer.flush()
        finally:
            self.consumer.close()
            self._models.close()

    def reference(self, model: str, version: str) -> Profile | None:
        """The version's reference profile from the store, cached; a miss is retried later."""
        cached = self._references.get((model, version))
        if cached and (cached[0] is not None or time.monotonic() < cached[1]):
            return cached[0]
        row = hold_back(lambda: self.store.get_profile(model, version), self.stop, PROCESSOR)
        profile = None
        if row is not None:
            try:
                profile = Profile.from_bytes(row.profile)
            except ProfileError as e:
                log.warning("reference profile of %s/%s is unusable: %s", model, version, e)
        self._references[(model, version)] = (profile, time.monotonic() + self.settings.reference_refresh_seconds)
        return profile

    def _closed_until(self, model: str, version: str) -> int | None:
        return hold_back(lambda: self.store.closed_until(model, version), self.stop, PROCESSOR)

    def _add(self, messages: list[Message]) -> list[tuple[Message, str, str]]:
        # Lists of str and int, not of tuples: those are what the garbage collector counts and scans.
        offsets = Offsets.of([m.topic() for m in messages], [m.partition() for m in messages],
                             [m.offset() for m in messages])
        self._next.update(offsets.nexts())
        headers = [m.headers() for m in messages]
        live = np.asarray([_live(h) for h in headers] if any(headers) else [True] * len(messages), dtype=bool)
        feedback = offsets.in_topic(self.catalog.feedback)
        predictions = np.flatnonzero(live & ~feedback)
        return (self._add_predictions([messages[i] for i in predictions.tolist()], offsets.take(predictions))
                + self._add_feedback([messages[i] for i in np.flatnonzero(live & feedback).tolist()]))

    def _add_predictions(self, messages: list[Message], offsets: Offsets) -> list[tuple[Message, str, str]]:
        """Decoded a batch at a time into columns; what the columnar path leaves, by fastavro."""
        decoded = hold_back(lambda: self._decoder.decode([m.value() for m in messages]), self.stop, PROCESSOR)
        columns, records = decoded.columns, [r for _, r in decoded.records]
        self.windows.add_prediction_columns(columns, offsets.take(columns.indices))
        self.windows.add_predictions(records, [_source(messages[i]) for i, _ in decoded.records])
        counts = Counter(r["model"] for r in records)
        counts.update(columns.model.counts())
        self._count_in(counts)
        return [(messages[i], f.reason, f.detail) for i, f in decoded.failures]

    def _add_feedback(self, messages: list[Message]) -> list[tuple[Message, str, str]]:
        dead, records, sources = [], [], []
        decoded = hold_back(lambda: self._feedback.decode_many([m.value() for m in messages]), self.stop, PROCESSOR)
        for m, value in zip(messages, decoded):
            if isinstance(value, DecodeFailure):
                dead.append((m, value.reason, value.detail))
            elif REPLAY_FLAG not in value["flags"]:
                records.append(value)
                sources.append(_source(m))
        self.windows.add_feedback(records, sources)
        return dead

    def _count_in(self, counts: Counter) -> None:
        """Records in per model, once a batch; a model name no ModelEvent registered is counted as
        "unknown" (names come from whoever produced the record: unbounded as label values)."""
        self._models.poll(0)
        known = Counter()
        for model, n in counts.items():
            known[self._models.label_values(model)[0]] += n
        for model, n in known.items():
            self.metrics.records_in.labels(PROCESSOR, model).inc(n)

    def _commit(self, dead: list) -> None:
        """Dead letters first (delivered, or this raises), then offsets no further than open windows
        allow. A failed offset commit loses nothing: the next one covers it, or a restart rereads."""
        for m, reason, detail in dead:
            self._dead.send_message(self.producer, m, reason, detail)
        if dead:
            self.producer.flush()
        held = self.windows.safe_offsets()
        upto = [TopicPartition(t, p, min(o, held.get((t, p), o))) for (t, p), o in self._next.items()]
        try:
            self.consumer.commit(offsets=upto, asynchronous=False)
        except KafkaException as e:
            log.warning("monitor offset commit failed: %s", e)

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._next.pop((tp.topic, tp.partition), None)


def _source(m: Message) -> tuple[str, int, int]:
    return m.topic(), m.partition(), m.offset()


def _live(headers) -> bool:
    """Not marked as a replay."""
    return replay_headers.get(headers, replay_headers.REPLAY) is None
