"""What the trigger keeps of each model's live version's labelled feedback, so that a round costs
what arrived since the last one, not a re-read of the lookback.

Per model, for its live version only: a bucket of labelled_at holding the performance counts,
hard examples and labels of the feedback labelled in it, and the version's ADWIN error stream. A
bucket is 1/BUCKETS of the lookback wide (at least MIN_BUCKET_MS), so a lookback of 20 s is
counted in 1 s buckets and one of a day in minutes. Buckets older than the lookback are dropped,
so memory is bounded by BUCKETS + 1 buckets per model (each a count per pair of classes and ten
calibration bins), whatever the traffic. Figures have bucket granularity: the lookback, and "labels
since the last request", start at the beginning of the bucket their start time falls in, so they
may take in up to a bucket of earlier labels. Only a build holds records: the lookback's stored
ones, while it runs (ADWIN takes them in label order).

A version's tally is built once, from the store, when it is first asked about (start-up, a new
live version): its live feedback over the lookback, which the store indexes by event time, binned
by labelled_at. From then on only the `feedback` topic feeds it, in the order the joiner emitted
the records, so a label that comes hours after its prediction is counted when it comes (a read of
the store by event time since the last round would miss it). The joiner writes the store before it
commits a record to the topic, so what the trigger took from the topic before the build is in the
store read. A record committed after the round's topic catch-up but stored before the build's read
ended is counted twice: at most the labels joined during that round (the read included), once per
build. A record the joiner emits twice (after its own restart) is counted, and fed to ADWIN, twice.
A label within the lookback for a prediction older than it is counted only if it comes after the
build (the build reads by event time).
"""
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from flywheel.feature_store import FeedbackRecord
from flywheel.processors.monitor.performance import PerformanceCounts
from flywheel.processors.trigger.detector import ChangePoint, ErrorStream, in_label_order
from flywheel.processors.trigger.policy import hard_example
from flywheel.processors.trigger.settings import TriggerSettings

BUCKETS = 1_440          # buckets per lookback
MIN_BUCKET_MS = 1_000

# (model, version, start, end) -> the version's live (not replayed) feedback with start <= event_time < end
StoredFeedback = Callable[[str, str, int, int], list[FeedbackRecord]]


@dataclass
class Bucket:
    counts: PerformanceCounts = field(default_factory=PerformanceCounts)
    hard_examples: int = 0
    labels: int = 0

    def merge(self, other: "Bucket") -> None:
        self.counts.merge(other.counts)
        self.hard_examples += other.hard_examples
        self.labels += other.labels


@dataclass
class VersionTally:
    """One live version's labelled feedback in buckets of labelled_at, and its error stream."""
    version: str
    low_confidence: float
    bucket_ms: int
    errors: ErrorStream | None = None          # None: change detection is off
    buckets: dict[int, Bucket] = field(default_factory=dict)     # bucket start (ms) -> bucket

    def add(self, records: list[FeedbackRecord]) -> None:
        """New records, in the order their labels arrived."""
        by_bucket = defaultdict(list)
        for r in records:
            by_bucket[bucket_start(r.labelled_at, self.bucket_ms)].append(vars(r))
        for start, rows in by_bucket.items():
            bucket = self.buckets.setdefault(start, Bucket())
            bucket.counts.add(rows)
            bucket.hard_examples += sum(hard_example(row, self.low_confidence) for row in rows)
            bucket.labels += len(rows)
        if self.errors is not None:
            self.errors.feed(records)

    def forget_before(self, time_ms: int) -> None:
        first = bucket_start(time_ms, self.bucket_ms)
        for start in [s for s in self.buckets if s < first]:
            del self.buckets[start]

    def since(self, time_ms: int) -> Bucket:
        """The buckets from the one `time_ms` falls in on, merged."""
        first, total = bucket_start(time_ms, self.bucket_ms), Bucket()
        for start, bucket in self.buckets.items():
            if start >= first:
                total.merge(bucket)
        return total

    @property
    def change(self) -> ChangePoint | None:
        return self.errors.change if self.errors is not None else None


class LiveTallies:
    """A VersionTally per model, of its live version; a version no longer live is dropped."""

    def __init__(self, settings: TriggerSettings, stored: StoredFeedback):
        self.settings = settings
        self._stored = stored
        self.models: dict[str, VersionTally] = {}

    def add(self, records: list[FeedbackRecord]) -> None:
        """Live feedback from the topic, in its order; only that of a version being tallied counts
        (any other is in the store, where a build reads it)."""
        by_model = defaultdict(list)
        for r in records:
            tally = self.models.get(r.model)
            if tally is not None and tally.version == r.model_version:
                by_model[r.model].append(r)
        for model, rows in by_model.items():
            self.models[model].add(rows)

    def of(self, model: str, version: str, now_ms: int) -> VersionTally:
        """The version's tally over the lookback ending now, built from the store if it is new."""
        start = now_ms - int(self.settings.lookback_seconds * 1000)
        tally = self.models.get(model)
        if tally is None or tally.version != version:
            tally = self.models[model] = self._build(model, version, start, now_ms)
        tally.forget_before(start)
        return tally

    def _build(self, model: str, version: str, start: int, end: int) -> VersionTally:
        delta = self.settings.change_delta
        tally = VersionTally(version, self.settings.low_confidence, bucket_width(self.settings.lookback_seconds),
                             ErrorStream(delta) if delta else None)
        tally.add(in_label_order(self._stored(model, version, start, end)))
        return tally


def bucket_width(lookback_seconds: float) -> int:
    return max(MIN_BUCKET_MS, int(lookback_seconds * 1000) // BUCKETS)


def bucket_start(time_ms: int, width_ms: int) -> int:
    return time_ms // width_ms * width_ms
