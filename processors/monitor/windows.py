"""Tumbling windows per model version: profiles of live predictions and the feedback that arrived.

Predictions fall into windows by `predicted_at`, feedback by `labelled_at` (the time the truth
became known: labels come minutes to days late, and a window must close some time). Windows
close by event time: a window closes once the watermark (watermark.py: per partition the newest
event time read, the lowest over the partitions read, less `allowed_lateness`; an idle partition
holds nothing back) passes its end. Feedback is kept once per request (a redelivered record
changes nothing, a replacing label replaces). A record for a window the group has already
merged and stored is late: it is counted (`late`, and the `flywheel_monitor_late_records`
metric) in the version's oldest open window, and never recomputed into the closed one.

Open windows per version are bounded (`max_open`): past the bound, the oldest open windows are
closed early, before the watermark reaches them (`closed_early`). That happens only while some
partition is read far behind the others (a backlog): the windows between the slowest
partition's watermark and the clock are open at once. A window closed early that gets more
records opens again and closes into a further partial, as one closed by the watermark does.

Closed windows are final, across restarts too: where a model version's closed windows end is
read from `closed` (the store) the first time the version is seen, and each close is persisted
by the caller before it commits, so a record read again after a restart can never recompute a
stored window from a subset of its records.

Windows open only for registered model versions (`registered`): names in records come from
whoever wrote them, and each would be windows, sketches, store rows and metric series. Records of
any other name are left out and counted (`unregistered`); a window's profile keeps only the
features of the model's spec (profile.py). Every live record, registered or not, moves its
partition's watermark: time is the partition's, not the version's.

For at-least-once consumption each window remembers its records' offsets per partition, as runs
(counted.py); `safe_offsets` is what may be committed without losing an open window's records on
a restart. It holds back the records after that offset of windows already closed as well: a
closed window's partial carries its runs (`Partial.offsets`), which the caller stores with the
partial, so whoever reads the partition next skips them instead of counting them twice.

A closed window is first a `Partial`: what this process read of the window's records, in a form
that merges (rows and late records add up, the profile's sketches merge, feedback becomes
additive `PerformanceCounts`; feedback is keyed by request id, and a request's feedback is in one
partition, so deduplicating it per process is complete). `Scorer` turns a partial, or the merge
of several processes' partials (processors/monitor/merge.py), into a `WindowResult`;
`close_due` does both for a process that reads every partition itself. Windows too small to
judge for drift are carried into the version's next one (`SampleGate`); the carry is the
caller's to persist with the version's closed_until (`Scorer.carried`) and is restored from
`carried` (the store) the first time the version is scored, so a restart does not lose it.
"""
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from flywheel.processors.monitor.counted import Partition, Runs, add_runs, runs_by_partition
from flywheel.processors.monitor.drift import DriftThresholds, FeatureDrift, SampleGate, compare
from flywheel.processors.monitor.performance import Performance, PerformanceCounts
from flywheel.processors.monitor.profile import Profile
from flywheel.processors.monitor.quality import QualityCheck, QualityThresholds, check
from flywheel.processors.monitor.watermark import Watermark
from flywheel.schemas.wire.prediction import PredictionColumns
from flywheel.streams.generations import logical_name

Key = tuple[str, str]                       # (model, version)
Source = tuple[str, int, int]               # (topic, partition, offset)
FEEDBACK_FIELDS = ("labelled_at", "true_label", "predicted_label", "true_value", "predicted_value", "scores",
                   "confidence")


@dataclass
class Offsets:
    """Where each record of a batch came from, as columns: (topic, partition) codes and offsets."""
    partitions: list[tuple[str, int]]
    partition: np.ndarray             # per record: index into `partitions`
    offset: np.ndarray                # int64

    @staticmethod
    def of(topics: list[str], partitions: list[int], offsets: list[int]) -> "Offsets":
        """From each record's topic, partition and offset."""
        index = {tp: i for i, tp in enumerate(dict.fromkeys(zip(topics, partitions)))}
        codes = np.fromiter(map(index.__getitem__, zip(topics, partitions)), dtype=np.int64, count=len(topics))
        return Offsets(list(index), codes, np.asarray(offsets, dtype=np.int64))

    @staticmethod
    def of_sources(sources: list[Source]) -> "Offsets":
        return Offsets.of(*map(list, zip(*sources))) if sources else Offsets.of([], [], [])

    def take(self, rows: np.ndarray) -> "Offsets":
        return Offsets(self.partitions, self.partition[rows], self.offset[rows])

    def nexts(self) -> dict[tuple[str, int], int]:
        """One past the last offset per partition."""
        last = np.full(len(self.partitions), -1)
        np.maximum.at(last, self.partition, self.offset)
        return {tp: o + 1 for tp, o in zip(self.partitions, last.tolist()) if o >= 0}

    def in_topic(self, topic: str) -> np.ndarray:
        """Per record: whether it came from `topic` (any generation of it)."""
        return np.asarray([logical_name(t) == topic for t, _ in self.partitions], dtype=bool)[self.partition]

    def runs(self) -> dict[Partition, Runs]:
        """The offsets per partition, as runs."""
        return runs_by_partition(self.partitions, self.partition, self.offset)


@dataclass
class WindowResult:
    model: str
    version: str
    start_ms: int
    end_ms: int
    rows: int
    has_reference: bool
    drift: list[FeatureDrift] = field(default_factory=list)
    quality: list[QualityCheck] = field(default_factory=list)
    performance: Performance | None = None
    late: int = 0
    missing: list[str] = field(default_factory=list)   # partitions ("topic:partition") the figures lack

    @property
    def flagged_features(self) -> list[str]:
        return [d.feature for d in self.drift if d.flagged]

    @property
    def drift_flagged(self) -> bool:
        return bool(self.flagged_features)

    @property
    def labelled(self) -> int:
        return self.performance.count if self.performance else 0

    def metrics(self) -> dict[str, float]:
        """Every figure of the window, flat: what the store keeps and the trigger reads."""
        out: dict[str, float] = {"rows": self.rows, "labelled": self.labelled, "late": self.late}
        if self.drift:      # judged (a window too small to judge is carried into the next one)
            out["drift_flagged"] = float(self.drift_flagged)
        for d in self.drift:
            out.update({f"drift.{d.feature}.{k}": v for k, v in d.statistics.items()})
        for q in self.quality:
            out[f"quality.{q.feature}.{q.rule}"] = q.value
        if self.performance:
            out.update({f"performance.{k}": v for k, v in self.performance.metrics.items()})
        return out


@dataclass
class Partial:
    """What one process read of a window's records, in mergeable form."""
    model: str
    version: str
    start_ms: int
    end_ms: int
    rows: int = 0
    late: int = 0
    profile: Profile | None = None        # None: the version had no reference profile
    counts: PerformanceCounts = field(default_factory=PerformanceCounts)
    offsets: dict[Partition, Runs] = field(default_factory=dict, repr=False)   # this process's records, not stored

    @property
    def key(self) -> Key:
        return self.model, self.version


def merge_partials(partials: list[Partial]) -> Partial:
    """One window from several processes' partials of it (profiles of the first are merged into
    in place). A process that read rows without a reference profile (the profile arrived while
    the window was open elsewhere) leaves the window unprofiled: drift and quality of a part of
    its rows would not be the window's."""
    first = partials[0]
    out = Partial(first.model, first.version, first.start_ms, first.end_ms)
    profiles = [p.profile for p in partials if p.profile is not None]
    if profiles and not any(p.rows and p.profile is None for p in partials):
        out.profile = profiles[0]
        for profile in profiles[1:]:
            out.profile.merge(profile)
    for p in partials:
        out.rows += p.rows
        out.late += p.late
        out.counts.merge(p.counts)
    return out


@dataclass
class Window:
    start_ms: int
    end_ms: int
    profile: Profile | None
    rows: int = 0
    feedback: dict[str, dict] = field(default_factory=dict)   # by request id: the latest label wins
    late: int = 0
    offsets: dict[Partition, Runs] = field(default_factory=dict)

    def note(self, offsets: dict[Partition, Runs]) -> None:
        """Remember the offsets of records added (from `Offsets.runs`)."""
        add_runs(self.offsets, offsets)

    def absorb(self, other: "Window") -> None:
        """Fold in a window the group has merged already: every record of it is late here (as one
        that came after the merge would be), and this window's span stays its own."""
        self.rows += other.rows
        # other.late counts records already in other.rows and other.feedback: not added again.
        self.late += other.rows + len(other.feedback)
        if self.profile is not None and other.profile is not None:
            start, end = self.profile.start_ms, self.profile.end_ms
            self.profile.merge(other.profile)
            self.profile.start_ms, self.profile.end_ms = start, end
        for request_id, record in other.feedback.items():
            kept = self.feedback.get(request_id)
            if kept is None or record["labelled_at"] >= kept["labelled_at"]:
                self.feedback[request_id] = record
        self.note(other.offsets)

    def partial(self, key: Key) -> Partial:
        counts = PerformanceCounts()
        counts.add(list(self.feedback.values()))
        return Partial(key[0], key[1], self.start_ms, self.end_ms, self.rows, self.late, self.profile, counts,
                       self.offsets)


class Scorer:
    """A closed window's figures: drift and quality against the version's reference profile,
    performance from its feedback counts. Windows too small to judge for drift are carried into
    the version's next one (SampleGate), so a version's windows are scored in order, by one
    scorer."""

    def __init__(self, references: Callable[[str, str], Profile | None], drift: DriftThresholds,
                 quality: QualityThresholds, carried: Callable[[str, str], Profile | None] = lambda m, v: None):
        self._references = references
        self._drift, self._quality = drift, quality
        self._gate = SampleGate(drift.min_count)
        self._carried = carried
        self._restored: set[Key] = set()

    def carried(self, key: Key) -> Profile | None:
        """The version's windows carried into its next one (too few rows to judge yet)."""
        return self._gate.carried.get(key)

    def score(self, window: Partial, missing: list[str] = ()) -> WindowResult:
        if window.key not in self._restored:     # what an earlier process carried, once per version
            self._restored.add(window.key)
            if (carry := self._carried(*window.key)) is not None:
                self._gate.carried.setdefault(window.key, carry)
        result = WindowResult(window.model, window.version, window.start_ms, window.end_ms, window.rows,
                              window.profile is not None, late=window.late,
                              performance=window.counts.performance(), missing=list(missing))
        reference = self._references(*window.key) if window.profile is not None else None
        if reference is not None and window.rows:
            judged = self._gate.admit(window.key, window.profile)
            if judged is not None:
                result.drift = compare(reference, judged, self._drift)
            result.quality = check(reference, window.profile, self._quality)
        return result


class WindowedMonitor:
    def __init__(self, window_ms: int, lateness_ms: int, references: Callable[[str, str], Profile | None],
                 drift: DriftThresholds = DriftThresholds(), quality: QualityThresholds = QualityThresholds(),
                 closed: Callable[[str, str], int | None] = lambda model, version: None,
                 registered: Callable[[str, str], bool] = lambda model, version: True,
                 carried: Callable[[str, str], Profile | None] = lambda model, version: None,
                 idle_ms: int = 0, max_open: int = 100):
        """`idle_ms` 0 makes every partition idle at once: the watermark is then the clock less
        the lateness, which is what a caller that adds a window's records and then moves the clock
        past its end means (the monitor process passes `[monitor] idle_seconds`)."""
        if window_ms <= 0:
            raise ValueError(f"window length must be positive, not {window_ms} ms")
        self.window_ms, self.lateness_ms, self.max_open = window_ms, lateness_ms, max_open
        self.watermark = Watermark(lateness_ms, idle_ms)
        self._references = references
        self._closed = closed
        self._registered = registered
        self.unregistered = 0       # records left out: their model version is not registered
        self.closed_early = 0       # windows closed before the watermark passed them (max_open)
        self.scorer = Scorer(references, drift, quality, carried)
        self._open: dict[Key, dict[int, Window]] = {}
        self._closed_until: dict[Key, int | None] = {}
        self.closed_through: int | None = None    # every window ending at or before it was closed here

    def add_predictions(self, records: list[dict], sources: list[Source] = ()) -> None:
        self._observe(records, sources, "predicted_at")
        for key, group in self._grouped(records, sources, "predicted_at").items():
            for start, (rows, srcs, late) in group.items():
                window = self._window(key, start)
                if window.profile is not None:
                    window.profile.add_records(rows)
                window.rows += len(rows)
                window.late += late
                window.note(Offsets.of_sources(srcs).runs())

    def add_prediction_columns(self, predictions: PredictionColumns, offsets: Offsets) -> None:
        """`add_predictions` for a batch decoded as columns; `offsets` has one row per prediction."""
        if len(offsets.partition):
            newest = np.full(len(offsets.partitions), np.iinfo(np.int64).min)
            np.maximum.at(newest, offsets.partition, predictions.predicted_at)
            self.watermark.observe((tp, t) for tp, t in zip(offsets.partitions, newest.tolist())
                                   if t > np.iinfo(np.int64).min)
        models, versions = predictions.model, predictions.model_version
        pair = models.codes * len(versions.values) + versions.codes
        for code in np.unique(pair).tolist():
            key = (models.values[code // len(versions.values)], versions.values[code % len(versions.values)])
            rows = np.flatnonzero(pair == code)
            if not self._registered(*key):
                self.unregistered += len(rows)
                continue
            starts, late = self._starts(key, predictions.predicted_at[rows])
            for start in np.unique(starts).tolist():
                inside = starts == start
                picked = rows[inside]
                window = self._window(key, start)
                if window.profile is not None:
                    window.profile.add_predictions(predictions, picked)
                window.rows += len(picked)
                window.late += int(late[inside].sum())
                window.note(offsets.take(picked).runs())

    def add_feedback(self, records: list[dict], sources: list[Source] = ()) -> None:
        self._observe(records, sources, "labelled_at")
        for key, group in self._grouped(records, sources, "labelled_at").items():
            for start, (rows, srcs, late) in group.items():
                window = self._window(key, start)
                for r in rows:
                    kept = window.feedback.get(r["request_id"])
                    if kept is None or r["labelled_at"] >= kept["labelled_at"]:
                        window.feedback[r["request_id"]] = {k: r.get(k) for k in FEEDBACK_FIELDS}
                window.late += late
                window.note(Offsets.of_sources(srcs).runs())

    def close_due(self, now_ms: int) -> list[WindowResult]:
        """Close, score and mark closed every window the watermark has passed at clock `now_ms`
        (one process that reads every partition and merges its own partials)."""
        results = [self.scorer.score(p) for p in self.close(now_ms)]
        for r in results:
            self.mark_closed((r.model, r.version), r.end_ms)
        return results

    def close(self, now_ms: int) -> list[Partial]:
        """Close every window the watermark has passed at clock `now_ms` into a partial, and a
        version's oldest open windows past `max_open` (closed early).

        A record is late only for a window the group has merged (`closed_until`, from the store),
        not for one merely closed here by the clock: a partition taken over from a process that
        stopped is read behind the clock, and its records belong in partials of their own windows.
        Such a window, open again here after an earlier close, is checked against the store
        first: if merged meanwhile, it is folded into the version's first unmerged window as late."""
        watermark = self.watermark.advance(now_ms)
        if watermark is None:
            return []
        through = watermark - watermark % self.window_ms
        if self.closed_through is not None:
            for key, windows in self._open.items():
                if any(w.end_ms <= self.closed_through for w in windows.values()):
                    self._closed_until[key] = self._closed(*key)
                    self._fold_merged(key)
        partials = []
        for key, windows in self._open.items():
            for start in sorted(windows):
                due = windows[start].end_ms <= through
                if not due and len(windows) <= self.max_open:
                    break
                self.closed_early += not due
                partials.append(windows.pop(start).partial(key))
        self.closed_through = through
        return partials

    def mark_closed(self, key: Key, end_ms: int) -> None:
        """The version's windows up to `end_ms` are merged: later records for them are late."""
        closed = self.closed_until(key)
        self._closed_until[key] = end_ms if closed is None else max(closed, end_ms)

    def _fold_merged(self, key: Key) -> None:
        merged, windows = self._closed_until[key], self._open[key]
        stale = [start for start in windows if merged is not None and start < merged]
        if stale:
            target = self._window(key, merged)
            for start in stale:
                target.absorb(windows.pop(start))

    def drop_open(self) -> None:
        """Forget every open window (its partitions were revoked: their records are read again
        from the committed offsets, which no open window's records are past) and what the
        watermark knew of the partitions."""
        self._open.clear()
        self.watermark.forget()

    def safe_offsets(self) -> dict[tuple[str, int], int]:
        """Per partition, the first offset some open window still needs (commit no further)."""
        out: dict[tuple[str, int], int] = {}
        for windows in self._open.values():
            for window in windows.values():
                for tp, runs in window.offsets.items():
                    out[tp] = min(runs.first, out.get(tp, runs.first))
        return out

    def closed_until(self, key: Key) -> int | None:
        """Where the version's closed windows end (None: none closed yet)."""
        if key not in self._closed_until:
            self._closed_until[key] = self._closed(*key)
        return self._closed_until[key]

    @property
    def open_windows(self) -> int:
        return sum(len(w) for w in self._open.values())

    def _grouped(self, records: list[dict], sources: list[Source], time_field: str
                 ) -> dict[Key, dict[int, tuple[list, list, int]]]:
        """Records grouped by (model, version) and window start, with their sources and late count."""
        sources = list(sources) or [None] * len(records)
        groups: dict[Key, dict[int, tuple[list, list, int]]] = {}
        for record, source in zip(records, sources):
            key = (record["model"], record["model_version"])
            if not self._registered(*key):
                self.unregistered += 1
                continue
            start = self._start(record[time_field])
            closed = self.closed_until(key)
            late = closed is not None and start < closed
            if late:
                start = closed
            rows, srcs, n_late = groups.setdefault(key, {}).get(start, ([], [], 0))
            rows.append(record)
            if source is not None:
                srcs.append(source)
            groups[key][start] = (rows, srcs, n_late + int(late))
        return groups

    def _observe(self, records: list[dict], sources: list[Source], time_field: str) -> None:
        partitions = [(s[0], s[1]) for s in sources] if sources else [None] * len(records)
        self.watermark.observe(zip(partitions, (r[time_field] for r in records)))

    def _start(self, t_ms: int) -> int:
        return t_ms - t_ms % self.window_ms

    def _starts(self, key: Key, t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`_grouped`'s window starts for one version's times, vectorised: (starts, late)."""
        starts = t_ms - t_ms % self.window_ms
        closed = self.closed_until(key)
        if closed is None:
            return starts, np.zeros(len(starts), dtype=bool)
        late = starts < closed
        return np.where(late, closed, starts), late

    def _window(self, key: Key, start: int) -> Window:
        windows = self._open.setdefault(key, {})
        if start not in windows:
            reference = self._references(*key)
            profile = reference.empty_like(start, start + self.window_ms) if reference else None
            windows[start] = Window(start, start + self.window_ms, profile)
        return windows[start]
