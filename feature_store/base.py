"""The store interface every backend implements. A backend is one module
`feature_store/<name>.py` defining `open_backend(settings, data_dir, clock)`; it implements the
primitive reads and writes below, while the shared rules (label counting, time buckets, ordered
range reads across buckets and versions) live here once.

Every write is an upsert by the record's key, so writing the same thing twice changes nothing.
Methods raise `StoreUnavailable` (retry later) or another `StoreError`; never driver exceptions.
"""
import heapq
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator, Sequence

from feature_store.records import (FeedbackRecord, OnlineFeatures, PendingLabel, PredictionRecord,
                                   ReferenceProfile, RetrainRecord, WindowMetrics)
from feature_store.settings import StoreSettings

Clock = Callable[[], int]   # epoch milliseconds


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class FeedbackIndexEntry:
    """Where a feedback row lives and which label it holds (table feedback_by_request)."""
    request_id: str
    model: str
    model_version: str
    event_time: int
    labelled_at: int
    true_label: str | None
    true_value: float | None
    label_count: int


class FeatureStore(ABC):
    backend: str = ""

    def __init__(self, settings: StoreSettings, clock: Clock = wall_clock_ms):
        self.settings = settings
        self.clock = clock

    # ---- lifecycle
    @abstractmethod
    def migrate(self) -> list[str]:
        """Create what is missing (keyspace/tables); safe to run again. Returns the statements applied."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- online features: (feature_group, entity_id) -> features, expiring after ttl_s
    @abstractmethod
    def put_online(self, group: str, rows: Sequence[OnlineFeatures], ttl_s: int | None = None) -> None: ...

    @abstractmethod
    def get_online(self, group: str, entity_ids: Sequence[str]) -> dict[str, OnlineFeatures]:
        """One call for many entities; unknown or expired ids are simply absent."""

    # ---- predictions waiting for ground truth, by request id
    @abstractmethod
    def put_predictions(self, rows: Sequence[PredictionRecord], ttl_s: int | None = None) -> None: ...

    @abstractmethod
    def get_predictions(self, request_ids: Sequence[str]) -> dict[str, list[PredictionRecord]]:
        """Every stored model version's prediction per request id; unknown ids absent."""

    # ---- ground truth that arrived before its prediction, by request id, expiring after ttl_s
    @abstractmethod
    def put_pending(self, labels: Sequence[PendingLabel], ttl_s: int) -> None: ...

    @abstractmethod
    def get_pending(self, request_ids: Sequence[str]) -> dict[str, PendingLabel]: ...

    @abstractmethod
    def delete_pending(self, request_ids: Sequence[str]) -> None: ...

    # ---- feedback: joined records, partitioned by (model, version, event_time bucket)
    def put_feedback(self, records: Sequence[FeedbackRecord]) -> list[FeedbackRecord]:
        """Upsert by (request_id, model, model_version) and return what was stored. A different
        label for a stored key replaces it and counts (label_count + 1); the same label again (a
        redelivery) changes nothing. The caller's label_count is ignored."""
        known = self._feedback_index([r.key for r in records])
        stored: dict[tuple, FeedbackRecord] = {}
        stale: list[FeedbackIndexEntry] = []
        for record in records:
            before = known.get(record.key)
            if before is None:
                count = 1
            elif (before.labelled_at, before.true_label, before.true_value) == \
                    (record.labelled_at, record.true_label, record.true_value):
                count = before.label_count
            else:
                count = before.label_count + 1
            if before is not None and before.event_time != record.event_time:
                stale.append(before)
            stored[record.key] = replace(record, label_count=count)
            known[record.key] = _index_entry(stored[record.key])
        rows = list(stored.values())
        self._write_feedback(rows, stale)
        return rows

    def feedback(self, model: str, start: int, end: int, version: str | None = None) -> Iterator[FeedbackRecord]:
        """Feedback with start <= event_time < end, ordered by (event_time, request_id), read lazily
        bucket by bucket; without a version, every version of the model merged in that order."""
        versions = [version] if version is not None else self.feedback_versions(model)
        streams = [self._feedback_range(model, v, start, end) for v in versions]
        return heapq.merge(*streams, key=lambda r: (r.event_time, r.request_id, r.model_version))

    @abstractmethod
    def feedback_versions(self, model: str) -> list[str]:
        """The versions of a model that have feedback."""

    def feedback_bucket(self, event_time: int) -> int:
        return event_time // self.settings.feedback_bucket_ms

    def _feedback_range(self, model: str, version: str, start: int, end: int) -> Iterator[FeedbackRecord]:
        for bucket in _buckets(start, end, self.settings.feedback_bucket_ms):
            yield from self._read_feedback_bucket(model, version, bucket, start, end)

    @abstractmethod
    def _feedback_index(self, keys: Sequence[tuple[str, str, str]]) -> dict[tuple, FeedbackIndexEntry]: ...

    @abstractmethod
    def _write_feedback(self, records: Sequence[FeedbackRecord], stale: Sequence[FeedbackIndexEntry]) -> None:
        """Upsert rows, index entries and versions; delete the rows `stale` points at (moved bucket)."""

    @abstractmethod
    def _read_feedback_bucket(self, model: str, version: str, bucket: int,
                              start: int, end: int) -> Iterable[FeedbackRecord]:
        """One partition's rows in [start, end), ordered by (event_time, request_id)."""

    # ---- window metrics, partitioned by (model, version, window_start bucket)
    @abstractmethod
    def put_metrics(self, rows: Sequence[WindowMetrics]) -> None: ...

    def metrics(self, model: str, version: str, start: int, end: int) -> Iterator[WindowMetrics]:
        """Windows with start <= window_start < end, in window order."""
        for bucket in _buckets(start, end, self.settings.metrics_bucket_ms):
            yield from self._read_metrics_bucket(model, version, bucket, start, end)

    def metrics_bucket(self, window_start: int) -> int:
        return window_start // self.settings.metrics_bucket_ms

    @abstractmethod
    def _read_metrics_bucket(self, model: str, version: str, bucket: int,
                             start: int, end: int) -> Iterable[WindowMetrics]: ...

    # ---- reference profiles per model version
    @abstractmethod
    def put_profile(self, profile: ReferenceProfile) -> None: ...

    @abstractmethod
    def get_profile(self, model: str, version: str) -> ReferenceProfile | None: ...

    # ---- retrain bookkeeping
    @abstractmethod
    def put_retrain(self, record: RetrainRecord) -> None: ...

    @abstractmethod
    def get_retrain(self, model: str, retrain_id: str) -> RetrainRecord | None: ...

    @abstractmethod
    def retrains(self, model: str) -> list[RetrainRecord]:
        """Every retrain of a model, oldest request first."""

    @abstractmethod
    def put_last_retrain(self, model: str, at: int) -> None: ...

    @abstractmethod
    def last_retrain(self, model: str) -> int | None: ...


def _buckets(start: int, end: int, width: int) -> range:
    if end <= start:
        return range(0)
    return range(start // width, (end - 1) // width + 1)


def _index_entry(r: FeedbackRecord) -> FeedbackIndexEntry:
    return FeedbackIndexEntry(r.request_id, r.model, r.model_version, r.event_time, r.labelled_at,
                              r.true_label, r.true_value, r.label_count)
