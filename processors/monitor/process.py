"""The monitor process: every model's predictions and the joined feedback in; per model version
and tumbling window, drift, data quality and live performance out, to the store (one
WindowMetrics row per window) and to Prometheus gauges.

It runs as one process or as N in one consumer group (`[monitor] instances`, `flywheel up
--monitors N`): each closes its partitions' share of a window into a partial in the store, and
the process that owns partition 0 of the feedback topic merges a window's partials once every
partition is accounted for, then scores and stores it (merge.py has the protocol, step by step).
One process is the same path with N = 1.

Offsets are committed at-least-once, and never past the first record an open window still
holds, so a restart or a rebalance recomputes open windows from their records instead of losing
them; records past the commit that closed windows already counted are stored with the partials
and skipped by the partition's next reader (counted.py). Records
marked as replays (`flywheel-replay` header, or feedback flagged `replay`) are not live traffic
and are left out of every figure. Reference profiles are read from the store per model version
and cached, and read again now and then (references.py); a version without one gets performance
figures but no drift or quality.
"""
import logging
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict

import numpy as np
from confluent_kafka import KafkaException, Message, TopicPartition
from flywheel.feature_store import FeatureStore, MonitorProgress, WindowMetrics, wall_clock_ms
from flywheel.processors.joiner.join import REPLAY_FLAG
from flywheel.processors.models import ModelFollower
from flywheel.processors.models.follower import UNREGISTERED
from flywheel.processors.monitor.counted import Counted, add_runs
from flywheel.processors.monitor.drift import DriftThresholds
from flywheel.processors.monitor.merge import Coverage, Merger, WindowKey, from_row, partition_name, to_row
from flywheel.processors.monitor.profile import Profile
from flywheel.processors.monitor.quality import QualityThresholds
from flywheel.processors.monitor.references import References
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.processors.monitor.windows import Offsets, Partial, WindowedMonitor, WindowResult, merge_partials
from flywheel.processors.runtime import ProcessorMetrics
from flywheel.processors.runtime.processor import Endpoint, StreamProcessor
from flywheel.schemas import AvroSerde
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.schemas.wire.prediction import PredictionDecoder
from flywheel.streams.generations import logical_name
from flywheel.streams.replay import headers as replay_headers
from flywheel.streams.settings import KafkaSettings
from prometheus_client import Counter as CounterMetric
from prometheus_client import Gauge

PROCESSOR = "monitor"
log = logging.getLogger(__name__)


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
        self.unregistered = CounterMetric("flywheel_monitor_unregistered_records", "Records of a model or version "
                                          "no ModelEvent registered: left out, no window opened", registry=r)
        self.ignored = CounterMetric("flywheel_monitor_unspecified_feature_values", "Feature values under a name "
                                     "the model's spec does not declare: left out of the window",
                                     ["model", "version"], registry=r)
        self.closed_early = CounterMetric("flywheel_monitor_windows_closed_early", "Windows closed before the "
                                          "watermark passed them: a version had max_open_windows open", registry=r)
        self.recounted = CounterMetric("flywheel_monitor_skipped_counted_records", "Records read again (a restart "
                                       "or rebalance) that written partials already counted: skipped", registry=r)
        self.late = CounterMetric("flywheel_monitor_late_records", "Records for an already closed window (folded "
                                  "into the oldest open one, never into the closed one)", ["model", "version"],
                                  registry=r)

    def show(self, result: WindowResult, m: str, v: str) -> None:
        """The window's figures under metric label values (m, v): its model and version if
        registered, else "unregistered" (see ModelFollower.label_values)."""
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
        "missing_partitions": result.missing,
        "drift": [asdict(d) for d in result.drift], "quality": [asdict(q) for q in result.quality],
        "performance": asdict(result.performance) if result.performance else None})


class Monitor(StreamProcessor):
    name = PROCESSOR

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, store: FeatureStore,
                 settings: MonitorSettings, metrics: MonitorMetrics | None = None,
                 stop: threading.Event | None = None, clock=wall_clock_ms, instance: str | None = None,
                 endpoint: Endpoint | None = None):
        super().__init__(kafka, registry, metrics or MonitorMetrics(), settings.group_id,
                         consumer_config={"topic.metadata.refresh.interval.ms": 5000}, stop=stop, endpoint=endpoint)
        self.settings = settings
        self.store = self.held(store)     # every store call holds back while the store is unavailable
        self.clock = clock
        self.reference = References(store, settings.reference_refresh_seconds, self.stop, PROCESSOR)
        self.windows = WindowedMonitor(int(settings.window_seconds * 1000),
                                       int(settings.allowed_lateness_seconds * 1000), self.reference,
                                       DriftThresholds.of(settings), QualityThresholds.of(settings),
                                       self.store.closed_until, self._registered, self._carried,
                                       int(settings.idle_seconds * 1000), settings.max_open_windows)
        self._decoder = self.held(PredictionDecoder(AvroSerde(registry, "Prediction")))
        self._feedback = AvroSerde(registry, "FeedbackRecord")
        self._next: dict[tuple[str, int], int] = {}
        self.counted = Counted(settings.group_id)
        self.closed: list[WindowResult] = []      # the most recent results, for callers and tests
        self.instance = instance or settings.instance_id
        self._incarnation, self._closes = uuid.uuid4().hex[:8], 0
        self.merger = Merger(int(settings.merge_wait_seconds * 1000))
        self._progress_due = 0.0
        self._topics: tuple[float, list[str]] = (0.0, [])
        self._models = ModelFollower(kafka, registry)
        self._models.catch_up()
        self._caught_up = time.monotonic()
        self.consumer.subscribe([self.catalog.feedback, self.catalog.predictions_pattern()],
                                on_revoke=self._on_revoke)

    def step(self) -> list[WindowResult]:
        messages = self.consume(self.settings.batch_size, self.settings.poll_timeout_seconds)
        unregistered = self.windows.unregistered
        dead = self._add(messages)
        self.metrics.unregistered.inc(self.windows.unregistered - unregistered)
        now = self.clock()
        early = self.windows.closed_early
        partials = self.windows.close(now)
        self.metrics.closed_early.inc(self.windows.closed_early - early)
        self._count_ignored(partials)
        if partials:
            # A window may close here twice (records of a partition taken over came behind the
            # clock): each close is a partial of its own, never written over the first.
            self._closes += 1
            part = f"{self.instance}/{self._incarnation}/{self._closes}"
            rows = [to_row(p, self.settings.group_id, part, now) for p in partials]
            closed: dict = {}
            for p in partials:
                add_runs(closed, p.offsets)
            self.store.put_partials(rows, self.counted.rows(self.counted.add(closed), partition_name, now))
        assigned = {(logical_name(tp.topic), tp.partition) for tp in self.consumer.assignment()}
        merging = (self.catalog.feedback, 0) in assigned
        if merging:
            self.merger.note([((p.model, p.version, p.start_ms), p.end_ms) for p in partials], now)
        results = []
        if self._report_progress(now, force=bool(partials)) and merging:
            results = self._merge(now)
        if messages or partials:
            self._commit(dead)
        return results

    def _registered(self, model: str, version: str) -> bool:
        """Whether a ModelEvent registered this version. A version registered a moment ago may
        reach the monitor before its event: the follower is caught up on a miss, once a second
        at most, so a flood of unknown names costs one metadata request a second."""
        if self._models.label_values(model, version)[1] != UNREGISTERED:
            return True
        if time.monotonic() >= self._caught_up + 1:
            self.hold_back(self._models.catch_up)
            self._caught_up = time.monotonic()
        return self._models.label_values(model, version)[1] != UNREGISTERED

    def _count_ignored(self, partials: list[Partial]) -> None:
        for p in partials:
            if p.profile is not None and p.profile.ignored:
                self.metrics.ignored.labels(p.model, p.version).inc(p.profile.ignored)

    def _report_progress(self, now: int, force: bool) -> bool:
        """Write this process's progress (merge.py, step 2) when a window closed here and every
        `progress_seconds`; True when written."""
        if not force and time.monotonic() < self._progress_due:
            return False
        self._progress_due = time.monotonic() + self.settings.progress_seconds
        progress = MonitorProgress(self.settings.group_id, self.instance, self._through(now), now)
        self.store.put_progress([progress])
        return True

    def _through(self, now: int) -> dict[str, int]:
        """Per partition owned: through when its windows are closed here, as far as this process
        has evidence of having read it (no lag: as far as the watermark; else as far as the
        partition's own watermark, from the event times read from it)."""
        closed = self.windows.closed_through
        if closed is None:
            return {}
        out = {}
        for (topic, partition), lag in self._lags().items():
            read = closed if lag == 0 else self.windows.watermark.of((topic, partition), now)
            if read is not None:
                out[partition_name(topic, partition)] = min(closed, read - read % self.windows.window_ms)
        return out

    def _lags(self) -> dict[tuple[str, int], int | None]:
        """Lag per owned partition from the high watermark of the last fetch (None: unknown), and
        the consumer's position (which steps over transaction markers, unlike the next offset
        after the last record). A partition nothing was read from yet is at its committed offset."""
        owned = self.consumer.assignment()
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(owned) if tp.offset >= 0}
        unread = [tp for tp in owned if (tp.topic, tp.partition) not in self._next | positions]
        try:
            for tp in self.consumer.committed(unread, timeout=5) if unread else []:
                low, _ = self.consumer.get_watermark_offsets(tp, cached=True)
                self._next[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else max(low, 0)
        except KafkaException as e:     # a rebalance or the broker away: vouch for them next time
            log.warning("monitor: committed offsets unknown (%s)", e)
        lags = {}
        for tp in owned:
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            position = positions.get((tp.topic, tp.partition), self._next.get((tp.topic, tp.partition)))
            lags[(tp.topic, tp.partition)] = high - position if high >= 0 and position is not None else None
        return lags

    def _merge(self, now: int) -> list[WindowResult]:
        """Merge every due window (merge.py, step 3): store its row and closed_until, show it."""
        group = self.settings.group_id
        # From the watermark, not the clock: a monitor reading a backlog closes windows behind the clock.
        closed = now if self.windows.closed_through is None else min(now, self.windows.closed_through)
        since = (closed - 2 * (self.windows.window_ms + self.windows.lateness_ms)
                 - int(self.settings.merge_wait_seconds * 1000))
        since = min([since, *(start for _, _, start in self.merger.pending)])
        listed = self.store.partials(group, since, now + 1)
        self.merger.forget_merged_before(since)
        self.merger.note([((r.model, r.model_version, r.window_start), r.window_end) for r in listed], now)
        partitions = self._partitions()
        if partitions is None or not self.merger.pending:
            return []
        coverage = Coverage.of(self.store.progress(group))
        due = self.merger.due(coverage, partitions, now)
        rows: dict[WindowKey, list] = {}
        for r in listed:
            rows.setdefault((r.model, r.model_version, r.window_start), []).append(r)
        results = [self.windows.scorer.score(window, due[key]) for key, window in self._unmerged(due, rows)]
        self.merger.done(due)
        if results:
            self._store_results(results, now)
        return results

    def _unmerged(self, due: dict[WindowKey, list[str]],
                  rows: dict[WindowKey, list]) -> list[tuple[WindowKey, Partial]]:
        """The due windows merged from their partials, less those at or before their version's
        stored closed_until (merged by an earlier merger: a closed window is final)."""
        closed: dict[tuple[str, str], int | None] = {}
        out = []
        for key in due:
            version = key[:2]
            if version not in closed:
                closed[version] = self.store.closed_until(*version)
            if closed[version] is not None and key[2] < closed[version]:
                # Merged by an earlier merger (this process took the role over and listed it again),
                # or a partial raced the merge (close() checks the store before writing one).
                log.info("monitor: %s/%s window %d is merged already; not merged twice", *key)
                continue
            out.append((key, merge_partials([from_row(r) for r in rows[key]])))
        return out

    def _store_results(self, results: list[WindowResult], now: int) -> None:
        self.store.put_metrics([window_row(r, now) for r in results])
        # Then mark them closed, so a restarted process never recomputes them from a subset.
        ends = {}
        for r in results:
            ends[(r.model, r.version)] = max(r.end_ms, ends.get((r.model, r.version), r.end_ms))
        for (model, version), end in ends.items():
            carried = self.windows.scorer.carried((model, version))     # restored by _carried after a restart
            self.store.put_closed_until(model, version, end, carried.to_bytes() if carried is not None else None)
            self.windows.mark_closed((model, version), end)
        self._models.poll(0)
        for r in results:
            self.metrics.show(r, *self._models.label_values(r.model, r.version))
        self.closed = (self.closed + results)[-1000:]

    def _partitions(self) -> list[str] | None:
        """Every partition the group reads (feedback and every predictions topic), from the
        consumer's metadata, refreshed every few seconds; None while the broker does not answer."""
        fetched, names = self._topics
        if time.monotonic() - fetched > 10 or not names:
            try:
                topics = self.consumer.list_topics(timeout=5).topics
            except KafkaException as e:
                log.warning("monitor: no topic metadata (%s)", e)
                return names or None
            pattern = re.compile(self.catalog.predictions_pattern())
            names = [partition_name(t, p) for t, meta in topics.items()
                     if logical_name(t) == self.catalog.feedback or pattern.match(t) for p in meta.partitions]
            self._topics = (time.monotonic(), names)
        return names

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._models.close()

    def _carried(self, model: str, version: str) -> Profile | None:
        carried = self.store.carried(model, version)
        return Profile.from_bytes(carried) if carried is not None else None

    def _add(self, messages: list[Message]) -> list[tuple[Message, str, str]]:
        self._models.poll(0)     # registrations first: only registered versions open windows
        # Lists of str and int, not of tuples: those are what the garbage collector counts and scans.
        topics, partitions = [m.topic() for m in messages], [m.partition() for m in messages]
        offsets = Offsets.of(topics, partitions, [m.offset() for m in messages])
        self._next.update(offsets.nexts())
        headers = [m.headers() for m in messages]
        live = np.asarray([_live(h) for h in headers] if any(headers) else [True] * len(messages), dtype=bool)
        live &= ~self._counted_already(offsets)
        feedback = offsets.in_topic(self.catalog.feedback)
        predictions = np.flatnonzero(live & ~feedback)
        return (self._add_predictions([messages[i] for i in predictions.tolist()], offsets.take(predictions))
                + self._add_feedback([messages[i] for i in np.flatnonzero(live & feedback).tolist()]))

    def _counted_already(self, offsets: Offsets) -> np.ndarray:
        """Per record: whether written partials counted it already (read again after a restart or a
        rebalance). A partition's counted offsets are loaded when it is first read."""
        if unloaded := self.counted.unloaded(set(offsets.partitions)):
            rows = self.store.counted(self.settings.group_id, [partition_name(*tp) for tp in unloaded])
            self.counted.load(rows, unloaded, partition_name)
        skip = self.counted.skip(offsets.partitions, offsets.partition, offsets.offset)
        self.metrics.recounted.inc(int(skip.sum()))
        return skip

    def _add_predictions(self, messages: list[Message], offsets: Offsets) -> list[tuple[Message, str, str]]:
        """Decoded a batch at a time into columns; what the columnar path leaves, by fastavro."""
        decoded = self._decoder.decode([m.value() for m in messages])
        columns, records = decoded.columns, [r for _, r in decoded.records]
        self.windows.add_prediction_columns(columns, offsets.take(columns.indices))
        self.windows.add_predictions(records, [_source(messages[i]) for i, _ in decoded.records])
        counts = Counter(r["model"] for r in records)
        counts.update(columns.model.counts())
        self._count_in(counts)
        return [(messages[i], f.reason, f.detail) for i, f in decoded.failures]

    def _add_feedback(self, messages: list[Message]) -> list[tuple[Message, str, str]]:
        dead, records, sources = [], [], []
        for m, value in self.decode(self._feedback, messages, dead):
            if REPLAY_FLAG not in value["flags"]:
                records.append(value)
                sources.append(_source(m))
        self.windows.add_feedback(records, sources)
        return dead

    def _count_in(self, counts: Counter) -> None:
        """Records in per model, once a batch; a model name no ModelEvent registered is counted as
        "unregistered" (names come from whoever produced the record: unbounded as label values)."""
        self._models.poll(0)
        known = Counter()
        for model, n in counts.items():
            known[self._models.label_values(model)[0]] += n
        for model, n in known.items():
            self.metrics.records_in.labels(PROCESSOR, model).inc(n)

    def _commit(self, dead: list) -> None:
        """Dead letters delivered, then offsets no further than open windows allow. The windows
        have taken the batch, so a failure rewinds nothing (no records are passed): it is waited
        out, and the next commit covers these offsets, or a restart reads them again."""
        held = self.windows.safe_offsets()
        upto = {tp: min(o, held.get(tp, o)) for tp, o in self._next.items()}
        self.commit([], dead=dead, upto=[TopicPartition(t, p, o) for (t, p), o in upto.items()])
        self.counted.committed(upto)

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        """Open windows are dropped (merge.py, step 4): their records are read again by whoever
        owns their partitions next."""
        self.windows.drop_open()
        for tp in partitions:
            self._next.pop((tp.topic, tp.partition), None)
        self.counted.forget([(tp.topic, tp.partition) for tp in partitions])


def _source(m: Message) -> tuple[str, int, int]:
    return m.topic(), m.partition(), m.offset()


def _live(headers) -> bool:
    """Not marked as a replay."""
    return replay_headers.get(headers, replay_headers.REPLAY) is None
