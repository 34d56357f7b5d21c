"""A batch of raw request messages for one model becomes one float32 matrix, in one pass:
size check, decode, validation against the feature spec, categorical encoding. Records that
cannot be served come back as failures with their dead-letter reason; the rest go on, in batch
order, with the encoded sections a Prediction copies from its request (see wire.py).

Decoding takes the columnar path for the whole batch where it can (the model's own key layout,
or `dense`), the per-record wire path or fastavro for the records it leaves; all end in the same
checks."""
import math
import time
from dataclasses import dataclass, field, fields
from operator import itemgetter

import numpy as np
from flywheel.feature_store.online import OnlineFeatureLookup
from flywheel.processors.models import MatrixLayout
from flywheel.processors.worker.columnar import ColumnarParser, Columns
from flywheel.processors.worker.wire import NumericTemplate, Parsed, RequestParser
from flywheel.schemas import AvroSerde, DecodeFailure
from flywheel.schemas.errors import FeatureProblem
from flywheel.schemas.features import FeatureSpec
from flywheel.schemas.wire.primitives import categorical_map, numeric_map, string, string_map, zigzag


@dataclass
class Failure:
    index: int          # position in the batch
    reason: str
    detail: str


@dataclass
class FeatureBatch(Columns):
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))  # (rows, width)
    failures: list[Failure] = field(default_factory=list)


class RequestDecoder:
    """Three paths, fastest first: the whole batch as numpy columns (columnar.py), then record by
    record on the wire (wire.RequestParser), then fastavro. `online`, when given, fills features a
    request lacks from the online store by entity id (every record then takes the fastavro path,
    so the merged features are what is echoed)."""

    def __init__(self, serde: AvroSerde, layout: MatrixLayout, max_bytes: int,
                 online: OnlineFeatureLookup | None = None, max_clock_skew_ms: int = 300_000):
        self.serde = serde
        self.max_clock_skew_ms = max_clock_skew_ms
        self.online = online
        self.layout = layout
        self.spec: FeatureSpec = layout.spec
        self.max_bytes = max_bytes
        self.k = len(layout.numeric)
        self.template = NumericTemplate(layout.numeric)
        self.parser = RequestParser(serde, self.template)
        self.columnar = ColumnarParser(serde._header, self.template) if self.parser.enabled and online is None \
            else None
        self._get_all = itemgetter(*layout.numeric) if self.k > 1 else None

    def decode(self, values: list[bytes | None]) -> FeatureBatch:
        limit = self.max_bytes
        failures = [] if None not in values and max(map(len, values), default=0) <= limit else \
            [Failure(i, "oversize", f"{len(v)} bytes is over the {limit}-byte limit")
             for i, v in enumerate(values) if v is not None and len(v) > limit]
        oversize = {f.index for f in failures}
        candidates = [i for i in range(len(values)) if i not in oversize]
        fast = self._columnar(values, candidates)
        taken = set(fast.indices)
        rest = [i for i in candidates if i not in taken] if len(taken) < len(candidates) else []
        cols = Columns.merge(fast, self._per_record(values, rest, failures)) if rest else fast
        matrix = np.zeros((len(cols), self.layout.width), dtype=np.float32)
        if len(cols) and self.k:
            with np.errstate(over="ignore"):
                matrix[:, :self.k] = cols.values
        dense = np.flatnonzero(cols.from_dense)
        if len(dense) == len(cols):
            cols.numeric_raw = self.template.encode(matrix[:, :self.k].astype(np.float64))
        elif len(dense):
            for j, raw in zip(dense.tolist(), self.template.encode(matrix[dense, :self.k].astype(np.float64))):
                cols.numeric_raw[j] = raw
        keep = self._finite(matrix, cols, failures)
        keep = self._times(cols, keep, failures)
        keep = self._categoricals(matrix, cols, keep, failures)
        if len(keep) < len(cols):
            matrix = matrix[keep]
            cols = Columns(**cols.take(keep))
        failures.sort(key=lambda f: f.index)
        return FeatureBatch(**{f.name: getattr(cols, f.name) for f in fields(Columns)}, matrix=matrix,
                            failures=failures)

    def _columnar(self, values: list[bytes | None], candidates: list[int]) -> Columns:
        present = [i for i in candidates if values[i] is not None]
        if self.columnar is None or not present:
            return _no_rows(self.k)
        cols = self.columnar.parse([values[i] for i in present])
        cols.indices = [present[r] for r in cols.indices]
        return cols

    def _per_record(self, values: list[bytes | None], positions: list[int], failures: list[Failure]) -> Columns:
        """The rows the columnar path left, record by record; failures are appended."""
        rows: dict[int, Parsed] = {}
        numeric: dict[int, np.ndarray | list] = {}
        checked: set[int] = set()        # rows whose numeric values the slow path already checked
        templated: list[int] = []
        fallback: list[int] = []
        for i in positions:
            v = values[i]
            parsed = self.parser.parse(v) if v is not None and self.online is None else None
            if parsed is None:
                fallback.append(i)
            else:
                rows[i] = parsed
                if parsed.templated:
                    templated.append(i)
        if templated:
            start = len(self.template.count)
            ok, extracted = self.template.extract([rows[i].numeric_raw[start:-1] for i in templated])
            for j, i in enumerate(templated):
                if ok[j]:
                    numeric[i] = extracted[j]
                else:                     # same length, other keys: let fastavro read it
                    del rows[i]
                    fallback.append(i)
        decoded = {}
        for i, record in zip(fallback, self.serde.decode_many([values[i] for i in fallback])):
            if isinstance(record, DecodeFailure):
                failures.append(Failure(i, record.reason, record.detail))
            else:
                decoded[i] = record
        if self.online is not None and decoded:
            for record, enriched in zip(decoded.values(), self.online.enrich(list(decoded.values()))):
                record["numeric"], record["categorical"] = enriched.numeric, enriched.categorical
                record["feature_sources"] = enriched.sources
        for i, record in decoded.items():
            rows[i] = _from_record(record)
        for i in sorted(rows):
            if i in numeric:
                continue
            try:
                numeric[i], slow = self._numeric_row(rows[i])
            except FeatureProblem as e:
                failures.append(Failure(i, e.reason, str(e)))
                del rows[i]
                continue
            if slow:
                checked.add(i)
        order = sorted(rows)
        kept = [rows[i] for i in order]
        return Columns(order, np.asarray([numeric[i] for i in order], dtype=np.float64).reshape(len(order), self.k),
                       np.asarray([r.dense is not None for r in kept], dtype=bool),
                       np.asarray([i in checked for i in order], dtype=bool),
                       [r.request_id for r in kept], [r.entity_id for r in kept], [r.event_time for r in kept],
                       [r.ids_raw for r in kept], [r.event_time_raw for r in kept], [r.numeric_raw for r in kept],
                       [r.categorical_raw for r in kept], [r.sources_raw for r in kept], [r.sources for r in kept],
                       [r.categorical for r in kept], [r.numeric_dict for r in kept])

    def _numeric_row(self, row: Parsed) -> tuple[list[float] | np.ndarray, bool]:
        """The numeric part of a row, and whether the slow path checked it already."""
        if row.dense is not None:
            if len(row.dense) != 4 * self.k:
                raise FeatureProblem("dense", "wrong_shape",
                                     f"dense holds {len(row.dense) // 4} float32 values, "
                                     f"the model has {self.k} numeric features")
            return np.frombuffer(row.dense, dtype="<f4"), False
        values = row.numeric_dict or {}
        if self._get_all is not None:
            try:
                found = list(self._get_all(values))
                if None not in found:
                    return found, False
            except KeyError:
                pass
        elif self.k == 1 and values.get(self.layout.numeric[0]) is not None:
            return [values[self.layout.numeric[0]]], False
        return self._slow_row(values, row.categorical), True

    def _slow_row(self, numeric: dict, categorical: dict) -> list[float]:
        self.spec.check(numeric, categorical)  # raises FeatureProblem with the dead-letter reason
        row = []
        for f in self.spec.numeric:
            value = numeric.get(f.name)
            if value is None:
                value = float(f.default) if f.default is not None else math.nan
            row.append(value)
        return row

    def _finite(self, matrix: np.ndarray, cols: Columns, failures: list[Failure]) -> list[int]:
        numeric = matrix[:, :self.k]
        # The slow path checked its rows already: NaN there means "optional, missing".
        bad = ~np.isfinite(numeric).all(axis=1) & ~cols.checked
        for j in np.flatnonzero(bad):
            column = int(np.flatnonzero(~np.isfinite(numeric[j]))[0])
            failures.append(Failure(cols.indices[j], "non_finite",
                                    f"feature '{self.layout.numeric[column]}': "
                                    f"value {numeric[j, column]} is not a finite float32"))
        return np.flatnonzero(~bad).tolist()

    def _times(self, cols: Columns, keep: list[int], failures: list[Failure]) -> list[int]:
        """A client's event_time must not be before 1970 nor further ahead of the worker's clock
        than the allowed skew (old times are fine: replays and backfills carry them)."""
        latest = int(time.time() * 1000) + self.max_clock_skew_ms
        if not cols.event_times or (min(cols.event_times) >= 0 and max(cols.event_times) <= latest):
            return keep         # the common case, without building arrays
        times = np.asarray(cols.event_times, dtype=np.int64)[keep]
        bad = (times < 0) | (times > latest)
        for j in np.asarray(keep)[bad].tolist():
            failures.append(Failure(cols.indices[j], "time_skew",
                                    f"event_time {cols.event_times[j]} is before 1970 or more than "
                                    f"{self.max_clock_skew_ms / 1000:g}s ahead of the worker's clock"))
        return np.asarray(keep)[~bad].tolist()

    def _categoricals(self, matrix: np.ndarray, cols: Columns, keep: list[int], failures: list[Failure]) -> list[int]:
        if not self.layout.categorical:
            return keep
        out = []
        for j in keep:
            categorical = cols.categorical[j]
            try:
                for index, f in enumerate(self.layout.categorical):
                    value = categorical.get(f.name)
                    if value is None:
                        if (cols.numeric_dicts[j] or {}).get(f.name) is not None:
                            raise FeatureProblem(f.name, "wrong_type", "expected categorical, got a number")
                        if f.default is None and f.required:
                            raise FeatureProblem(f.name, "missing_feature", "required and missing")
                        value = f.default if f.default in self.layout.columns[index] else None
                    elif value not in self.layout.columns[index]:
                        if not f.unknown_bucket:
                            raise FeatureProblem(f.name, "unseen_category",
                                                 f"category {value!r} was not seen in training")
                        value = f.unknown_bucket
                    self.layout.encode_categories(matrix, j, index, value)
                out.append(j)
            except FeatureProblem as e:
                failures.append(Failure(cols.indices[j], e.reason, str(e)))
        return out


def _no_rows(k: int) -> Columns:
    return Columns([], np.zeros((0, k)), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool),
                   *([] for _ in range(len(fields(Columns)) - 4)))


def _from_record(record: dict) -> Parsed:
    """A fastavro-decoded (maybe enriched) request in the fast path's shape, sections re-encoded."""
    sources = record.get("feature_sources")
    return Parsed(record["request_id"], record["entity_id"], record["event_time"],
                  string(record["request_id"]) + string(record["entity_id"]), zigzag(record["event_time"]),
                  numeric_map(record["numeric"]), False, record["categorical"],
                  categorical_map(record["categorical"]), record["dense"], record["numeric"],
                  string_map(sources) if sources else b"\x00", sources)
