"""The store interface. Callers use the record-level methods; they are written once, here, on
top of four table primitives (`_write`, `_select`, `_select_range`, `migrate`) that a backend
implements over the tables of feature_store/cql (see schema.py). A backend is one module
`feature_store/<name>.py` defining `open_backend(settings, data_dir, clock)`.

Every method takes many records at once and is one round of store calls per table, never one per
record; `with store.batch():` gathers the writes of several methods into one `_write` (one
transaction on SQLite, one bounded-concurrency round on Cassandra). Every write is an upsert by
the table's primary key, so writing the same thing twice changes nothing. Methods raise
`StoreUnavailable` (retry later) or another `StoreError`; never driver exceptions.
"""
import heapq
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from flywheel.feature_store.records import (
    CountedOffsets,
    FeedbackRecord,
    MonitorProgress,
    OnlineFeatures,
    PredictionRecord,
    ReferenceProfile,
    RetrainRecord,
    WindowMetrics,
    WindowPartial,
)
from flywheel.feature_store.schema import migrations
from flywheel.feature_store.settings import StoreSettings

Clock = Callable[[], int]   # epoch milliseconds
Row = dict[str, Any]

_INDEX_COLUMNS = ("request_id", "model", "model_version", "event_time", "labelled_at",
                  "true_label", "true_value", "label_count")
_LABEL_COLUMNS = ("true_label", "true_value")


class _Cleared:
    def __repr__(self) -> str:
        return "CLEARED"


# A column value that must overwrite what a row held before with null. A plain None means "no
# value": Cassandra leaves the column unset (a null would write a tombstone).
CLEARED = _Cleared()


@dataclass(frozen=True)
class Write:
    """Upserts of whole rows (expiring after ttl_s when > 0) or deletes by full primary key."""
    table: str
    rows: Sequence[Row] = ()
    ttl_s: int | None = None
    deletes: Sequence[tuple] = ()


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class FeatureStore(ABC):
    backend: str = ""

    def __init__(self, settings: StoreSettings, clock: Clock = wall_clock_ms):
        self.settings = settings
        self.clock = clock
        self._gathering = threading.local()

    # ---- primitives a backend implements
    @abstractmethod
    def migrate(self) -> list[str]:
        """Create what is missing; safe to run again. Returns the migration files applied now."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _write(self, writes: Sequence[Write]) -> None:
        """Apply writes of whole rows (a None column: no value) and deletes together. They touch
        distinct keys, so their order does not matter."""

    @abstractmethod
    def _select(self, table: str, keys: Sequence[tuple]) -> list[Row]:
        """Unexpired rows whose leading key columns equal one of `keys` (each at least the
        partition key), in key order within a partition."""

    @abstractmethod
    def _select_range(self, table: str, partition: tuple, start: int, end: int) -> Iterator[Row]:
        """One partition's rows with start <= first clustering column < end, in clustering
        order, read lazily page by page."""

    @abstractmethod
    def _bucket_bounds(self, table: str, prefix: tuple) -> tuple[int, int] | None:
        """The lowest and highest bucket of the partitions (prefix..., bucket) holding rows, or None."""

    # ---- writes, gathered per batch
    @contextmanager
    def batch(self):
        """The writes of the methods called inside go to the store together when it ends (none if
        it raises). Reads inside see the store as it was before the batch. A batch inside a batch
        is part of the outer one."""
        if getattr(self._gathering, "writes", None) is not None:
            yield self
            return
        self._gathering.writes = []
        try:
            yield self
            writes = [w for w in self._gathering.writes if w.rows or w.deletes]
        finally:
            self._gathering.writes = None
        if writes:
            self._write(writes)

    def _upsert(self, table: str, rows: Sequence[Row], ttl_s: int | None = None) -> None:
        self._submit(Write(table, rows=rows, ttl_s=ttl_s))

    def _delete(self, table: str, keys: Sequence[tuple]) -> None:
        self._submit(Write(table, deletes=keys))

    def _submit(self, write: Write) -> None:
        gathering = getattr(self._gathering, "writes", None)
        if gathering is not None:
            gathering.append(write)
        elif write.rows or write.deletes:
            self._write([write])

    def applied_migrations(self) -> dict[str, int]:
        """Migration file name -> when it was applied (epoch ms), from the schema_migrations ledger."""
        rows = self._select("schema_migrations", [(m.name,) for m in migrations()])
        return {r["name"]: r["applied_at"] for r in rows}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- online features: (feature_group, entity_id) -> features, expiring after ttl_s
    def put_online(self, group: str, rows: Sequence[OnlineFeatures], ttl_s: int | None = None) -> None:
        self._upsert("online_features", [{"feature_group": group, **r.to_dict()} for r in rows], ttl_s)

    def get_online(self, group: str, entity_ids: Sequence[str]) -> dict[str, OnlineFeatures]:
        """One call for many entities; unknown or expired ids are simply absent."""
        rows = self._select("online_features", [(group, e) for e in dict.fromkeys(entity_ids)])
        return {r["entity_id"]: OnlineFeatures.from_dict(r) for r in rows}

    # ---- predictions waiting for ground truth, by request id
    def put_predictions(self, rows: Sequence[PredictionRecord], ttl_s: int | None = None) -> None:
        self._upsert("predictions_by_request", [r.to_dict() for r in rows], ttl_s)

    def get_predictions(self, request_ids: Sequence[str]) -> dict[str, list[PredictionRecord]]:
        """Every stored model version's prediction per request id; unknown ids absent."""
        out: dict[str, list[PredictionRecord]] = {}
        for row in self._select("predictions_by_request", [(r,) for r in dict.fromkeys(request_ids)]):
            out.setdefault(row["request_id"], []).append(PredictionRecord.from_dict(row))
        return out

    # ---- feedback: joined records, partitioned by (model, version, event_time bucket, shard)
    def put_feedback(self, records: Sequence[FeedbackRecord]) -> list[FeedbackRecord]:
        """Upsert by (request_id, model, model_version) and return what was stored. A different
        label for a stored key replaces it and counts (label_count + 1); the same label again (a
        redelivery) changes nothing. The caller's label_count is ignored. One read of the stored
        labels, then one batch of writes. The count is read-then-written, so one writer per
        request id at a time: the joiner's request-id partitioning gives that (docs/concepts/loop.md, Joiner)."""
        known = {(r["request_id"], r["model"], r["model_version"]): r for r in
                 self._select("feedback_by_request", [(i,) for i in dict.fromkeys(r.request_id for r in records)])}
        stored: dict[tuple, FeedbackRecord] = {}
        cleared: dict[tuple, tuple[str, ...]] = {}
        moved: list[tuple] = []
        for record in records:
            key = record.key
            before = known.get(key)
            if before is None:
                count = 1
            else:
                count = before["label_count"] + (not _same_label(before, record))
                if before["event_time"] != record.event_time:
                    moved.append(self._feedback_key(before["model"], before["model_version"],
                                                    before["event_time"], before["request_id"]))
                # a relabel that switches kind (label <-> value) clears the other
                cleared[key] = tuple(c for c in _LABEL_COLUMNS if before[c] is not None and getattr(record, c) is None)
            stored[key] = row = replace(record, label_count=count) if count != record.label_count else record
            known[key] = {c: getattr(row, c) for c in _INDEX_COLUMNS}
        rows = list(stored.values())
        current = {self._feedback_key(r.model, r.model_version, r.event_time, r.request_id) for r in rows}

        def clear(row: Row, key: tuple) -> Row:
            columns = cleared.get(key)
            return {**row, **dict.fromkeys(columns, CLEARED)} if columns else row

        ttl = self.settings.feedback_retention_s
        with self.batch():
            self._upsert("feedback_by_time_shard", [
                clear({**r.to_dict(), "bucket": self.feedback_bucket(r.event_time),
                       "shard": self.feedback_shard(r.request_id)}, r.key) for r in rows], ttl)
            self._upsert("feedback_by_request", [clear(known[r.key], r.key) for r in rows], ttl)
            self._upsert("feedback_versions", [{"model": m, "model_version": v}
                                               for m, v in dict.fromkeys((r.model, r.model_version) for r in rows)])
            self._delete("feedback_by_time_shard", [k for k in dict.fromkeys(moved) if k not in current])
        return rows

    def feedback(self, model: str, start: int, end: int, version: str | None = None) -> Iterator[FeedbackRecord]:
        """Feedback with start <= event_time < end, ordered by (event_time, request_id), read lazily
        bucket by bucket; without a version, every version of the model merged in that order."""
        versions = [version] if version is not None else self.feedback_versions(model)
        streams = [self._feedback_range(model, v, start, end) for v in versions]
        return heapq.merge(*streams, key=lambda r: (r.event_time, r.request_id, r.model_version))

    def get_feedback(self, keys: Sequence[tuple[str, str, str, int]]) -> dict[tuple[str, str, str], FeedbackRecord]:
        """Stored feedback by (request_id, model, model_version, event_time), many in one read;
        keyed by (request_id, model, model_version). Unknown keys are absent."""
        rows = self._select("feedback_by_time_shard",
                            [self._feedback_key(m, v, t, r) for r, m, v, t in dict.fromkeys(keys)])
        return {(row["request_id"], row["model"], row["model_version"]): FeedbackRecord.from_dict(row) for row in rows}

    def feedback_versions(self, model: str) -> list[str]:
        """The versions of a model that have feedback."""
        return [r["model_version"] for r in self._select("feedback_versions", [(model,)])]

    def feedback_bucket(self, event_time: int) -> int:
        return event_time // self.settings.feedback_bucket_ms

    def feedback_shard(self, request_id: str) -> int:
        """Spreads a bucket's records over feedback_shards partitions (and so over replica sets);
        crc32 rather than hash(): the same in every process."""
        return zlib.crc32(request_id.encode()) % self.settings.feedback_shards

    def _feedback_key(self, model: str, version: str, event_time: int, request_id: str) -> tuple:
        return (model, version, self.feedback_bucket(event_time), self.feedback_shard(request_id),
                event_time, request_id)

    def _feedback_range(self, model: str, version: str, start: int, end: int) -> Iterator[FeedbackRecord]:
        for bucket in self._buckets("feedback_by_time_shard", (model, version), start, end,
                                    self.settings.feedback_bucket_ms):
            shards = [self._select_range("feedback_by_time_shard", (model, version, bucket, shard), start, end)
                      for shard in range(self.settings.feedback_shards)]
            for row in heapq.merge(*shards, key=lambda r: (r["event_time"], r["request_id"])):
                yield FeedbackRecord.from_dict(row)

    # ---- window metrics, partitioned by (model, version, window_start bucket)
    def put_metrics(self, rows: Sequence[WindowMetrics]) -> None:
        self._upsert("metrics_by_window", [
            {"model": m.model, "model_version": m.model_version, "bucket": self.metrics_bucket(m.window_start),
             "window_start": m.window_start, "window_end": m.window_end, "metric_values": m.values,
             "detail": m.detail} for m in rows], self.settings.metrics_retention_s)

    def metrics(self, model: str, version: str, start: int, end: int) -> Iterator[WindowMetrics]:
        """Windows with start <= window_start < end, in window order."""
        for bucket in self._buckets("metrics_by_window", (model, version), start, end,
                                    self.settings.metrics_bucket_ms):
            for row in self._select_range("metrics_by_window", (model, version, bucket), start, end):
                yield WindowMetrics.from_dict(row, values=row["metric_values"])

    def metrics_bucket(self, window_start: int) -> int:
        return window_start // self.settings.metrics_bucket_ms

    # ---- the monitor's closed windows: the end of the last one per model version, and what is
    # carried from them into the next (windows too small to judge, as one profile)
    def put_closed_until(self, model: str, version: str, end: int, carried: bytes | None = None) -> None:
        """The version's windows up to `end` are closed, with what they carry into the next (None:
        nothing), in one write (one transaction on SQLite)."""
        with self.batch():
            self._upsert("monitor_closed_windows", [{"model": model, "model_version": version, "closed_until": end}])
            self._upsert("monitor_carried_windows", [{"model": model, "model_version": version, "carried_until": end,
                                                      "profile": CLEARED if carried is None else carried}])

    def closed_until(self, model: str, version: str) -> int | None:
        rows = self._select("monitor_closed_windows", [(model, version)])
        return rows[0]["closed_until"] if rows else None

    def carried(self, model: str, version: str) -> bytes | None:
        """What the version's closed windows carry into the next, if written with its closed_until."""
        rows = self._select("monitor_carried_windows", [(model, version)])
        if not rows or rows[0]["profile"] is None or rows[0]["carried_until"] != self.closed_until(model, version):
            return None
        return rows[0]["profile"]

    # ---- the monitor processes' partial windows, partitioned by (group_id, window_start bucket)
    def put_partials(self, partials: Sequence[WindowPartial], counted: Sequence[CountedOffsets] = ()) -> None:
        """The partials, and per partition the offsets past the commit they count (`counted`), in
        one write (one transaction on SQLite; on Cassandra both statements of one call)."""
        retention = self.settings.monitor_partials_retention_s
        with self.batch():
            self._upsert("monitor_partials", [{**p.to_dict(), "bucket": self.metrics_bucket(p.window_start)}
                                              for p in partials], retention)
            self._upsert("monitor_counted_offsets", [c.to_dict() for c in counted], retention)

    def counted(self, group_id: str, partitions: Sequence[str]) -> list[CountedOffsets]:
        """The offsets already counted in the group's partials, of the partitions given."""
        rows = self._select("monitor_counted_offsets", [(group_id, p) for p in partitions])
        return [CountedOffsets.from_dict(r) for r in rows]

    def partials(self, group_id: str, start: int, end: int) -> Iterator[WindowPartial]:
        """Every model's partials with start <= window_start < end, in (window_start, model,
        model_version, instance) order."""
        for bucket in self._buckets("monitor_partials", (group_id,), start, end, self.settings.metrics_bucket_ms):
            for row in self._select_range("monitor_partials", (group_id, bucket), start, end):
                yield WindowPartial.from_dict(row)

    # ---- each monitor process's progress (how far its partials are written), per group
    def put_progress(self, rows: Sequence[MonitorProgress]) -> None:
        self._upsert("monitor_progress", [r.to_dict() for r in rows], self.settings.monitor_partials_retention_s)

    def progress(self, group_id: str) -> list[MonitorProgress]:
        return [MonitorProgress.from_dict(r) for r in self._select("monitor_progress", [(group_id,)])]

    # ---- reference profiles per model version
    def put_profile(self, profile: ReferenceProfile) -> None:
        self._upsert("reference_profiles", [profile.to_dict()])

    def get_profile(self, model: str, version: str) -> ReferenceProfile | None:
        rows = self._select("reference_profiles", [(model, version)])
        return ReferenceProfile.from_dict(rows[0]) if rows else None

    # ---- retrain bookkeeping
    def put_retrain(self, record: RetrainRecord) -> None:
        self._upsert("retrains_by_model", [record.to_dict()])

    def get_retrain(self, model: str, retrain_id: str) -> RetrainRecord | None:
        rows = self._select("retrains_by_model", [(model, retrain_id)])
        return RetrainRecord.from_dict(rows[0]) if rows else None

    def retrains(self, model: str) -> list[RetrainRecord]:
        """Every retrain of a model, oldest request first."""
        records = [RetrainRecord.from_dict(r) for r in self._select("retrains_by_model", [(model,)])]
        return sorted(records, key=lambda r: (r.requested_at, r.retrain_id))

    def put_last_retrain(self, model: str, at: int) -> None:
        self._upsert("retrain_state", [{"model": model, "last_retrain_at": at}])

    def last_retrain(self, model: str) -> int | None:
        rows = self._select("retrain_state", [(model,)])
        return rows[0]["last_retrain_at"] if rows else None

    def _buckets(self, table: str, prefix: tuple, start: int, end: int, width: int) -> range:
        """The buckets a range read visits: every one of [start, end) when that is a few, else
        only those between the partition's first and last bucket that hold data, so an
        open-ended range (0, 2**62) is bounded by the data instead of walked bucket by bucket."""
        if end <= start:
            return range(0)
        first, last = start // width, (end - 1) // width
        if last - first < WALK_LIMIT:
            return range(first, last + 1)
        bounds = self._bucket_bounds(table, prefix)
        if bounds is None:
            return range(0)
        return range(max(first, bounds[0]), min(last, bounds[1]) + 1)


WALK_LIMIT = 64  # buckets a range read walks without first asking where the data is


def _same_label(before: Row, record: FeedbackRecord) -> bool:
    return (before["labelled_at"], before["true_label"], before["true_value"]) == \
        (record.labelled_at, record.true_label, record.true_value)
