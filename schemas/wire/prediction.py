"""Whole-batch decoding of Predictions (schemas/avro/Prediction.avsc) as numpy columns.

fastavro takes about 24 us for a Prediction with 32 features, one record at a time. Here the
batch is one byte array read for all records together (`cursor.Cursor`): varints, strings and
doubles are numpy columns, and the names of the `numeric` and `categorical` maps are checked
against the key order of one record and then read for every record of that layout at once (a
null value is read as such, so nulls do not leave the fast path). Short strings that repeat
(model, version, label, categories) come out as a `Factor` (codes into their distinct values).

A record is accepted only if it has this schema's id in its header, every field parses, every
string is UTF-8 and its last field ends exactly where the record does. Anything else (another
writer schema id, maps in several blocks or with negative block counts, a key order beyond the
first MAX_LAYOUTS of the batch, duplicate keys, a truncated or malformed record...) is decoded by
fastavro record by record, which also names the dead-letter reason of a record it cannot read.
The decoder checks itself against fastavro when built and switches itself off if the schema
changed.
"""
import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np
from flywheel.schemas.serde import AvroSerde, DecodeFailure
from flywheel.schemas.wire.compiled import records as compiled_records
from flywheel.schemas.wire.compiled import runs
from flywheel.schemas.wire.cursor import Batch, Cursor
from flywheel.schemas.wire.factor import PACKED_BYTES, Factor, factor
from flywheel.schemas.wire.primitives import DOUBLE, read_long, read_map_at, string
from flywheel.schemas.wire.self_test import agrees

ROLES = ("LIVE", "CANARY", "SHADOW")
MAX_LAYOUTS = 8          # key orders of one map read as columns per batch (models of one batch)
MAX_ENTRIES = 64         # longer arrays and maps (scores, flags, feature_sources) are fastavro's
T = TypeVar("T")
FIELDS = [("request_id", "string"), ("entity_id", "string"), ("model", "string"), ("model_version", "string"),
          ("role", "enum"), ("event_time", "long"), ("predicted_at", "long"), ("label", "union"),
          ("value", "union"), ("scores", "map"), ("confidence", "union"), ("flags", "array"),
          ("numeric", "map"), ("categorical", "map"), ("feature_sources", "map"), ("inference_us", "long"),
          ("batch_size", "int")]


# Written by fastavro and read back by each fast path when it is built: any difference switches it off.
SAMPLES = [
    {"request_id": "r-é", "entity_id": "e", "model": "m", "model_version": "v", "role": "SHADOW",
     "event_time": 1_700_000_000_123, "predicted_at": -5, "label": "a", "value": None,
     "scores": {"a": 0.25, "b": 0.75}, "confidence": 0.75, "flags": ["low_confidence", "x"],
     "numeric": {"x": 1.5, "y": None}, "categorical": {"c": "p", "d": None},
     "feature_sources": {"x": "request"}, "inference_us": 77, "batch_size": 3},
    {"request_id": "", "entity_id": "", "model": "m", "model_version": "v", "role": "LIVE",
     "event_time": 0, "predicted_at": 2 ** 62, "label": None, "value": -2.5, "scores": {},
     "confidence": None, "flags": [], "numeric": {"y": 2.0, "x": float("nan")}, "categorical": {},
     "feature_sources": {}, "inference_us": 0, "batch_size": 1},
]


@dataclass
class Span:
    """[start, end) in the batch buffer, per record."""
    start: np.ndarray
    end: np.ndarray

    def take(self, rows: np.ndarray) -> "Span":
        return Span(self.start[rows], self.end[rows])


@dataclass
class MapColumns:
    """One map field of a batch as columns: every key any record has (`names`), and per record
    its layout, the keys (columns) it has, in its order. NaN / None stand for null or absent."""
    names: list[str]
    layout: np.ndarray                # per record: index into `layouts`
    layouts: list[list[int]]          # columns of each layout, in key order

    def records(self) -> list[dict]:
        """Every record's map, keys in its order, None where null: built a layout at a time from
        columns turned into lists once (a numpy scalar per value costs more than the record)."""
        out: list[dict] = [{} for _ in range(len(self.layout))]
        for lay, columns in enumerate(self.layouts):
            rows = np.flatnonzero(self.layout == lay)
            if rows.size and columns:
                keys = [self.names[c] for c in columns]
                for r, values in zip(rows.tolist(), self._rows(rows, columns)):
                    out[r] = dict(zip(keys, values))
        return out

    def _rows(self, rows: np.ndarray, columns: list[int]) -> list:
        raise NotImplementedError

    def columns_of(self, rows: np.ndarray) -> list[int]:
        """The columns some record of `rows` has, in first-seen order."""
        if len(self.layouts) == 1:
            return self.layouts[0] if len(rows) else []
        seen = dict.fromkeys(c for lay in np.unique(self.layout[rows]).tolist() for c in self.layouts[lay])
        return sorted(seen)


@dataclass
class NumericColumns(MapColumns):
    values: np.ndarray                # (records, names) float64, NaN where null or absent
    null: np.ndarray                  # (records, names) bool: null (a NaN that is not null is a value)

    def columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The features of records `rows` by name (those any of them has)."""
        return {self.names[c]: self.values[rows, c] for c in self.columns_of(rows)}

    def _rows(self, rows: np.ndarray, columns: list[int]) -> list:
        values, null = self.values[np.ix_(rows, columns)], self.null[np.ix_(rows, columns)]
        if null.any():
            values = values.astype(object)
            values[null] = None
        return values.tolist()


@dataclass
class CategoricalColumns(MapColumns):
    values: list[Factor]              # per name: the value of every record (None: null or absent)

    def columns(self, rows: np.ndarray) -> dict[str, Factor]:
        return {self.names[c]: self.values[c].take(rows) for c in self.columns_of(rows)}

    def _rows(self, rows: np.ndarray, columns: list[int]) -> list:
        return list(zip(*(self.values[c].take(rows).strings() for c in columns)))


@dataclass
class PredictionColumns:
    """The Predictions of a batch the columnar path accepted, in batch order."""
    buffer: bytes                     # the batch's values joined: what the spans index
    indices: np.ndarray               # batch positions
    request_id_span: Span
    entity_id_span: Span
    model: Factor
    model_version: Factor
    role: np.ndarray                  # index into ROLES
    event_time: np.ndarray            # int64
    predicted_at: np.ndarray          # int64
    label: Factor
    value: np.ndarray                 # float64, NaN where null
    has_value: np.ndarray             # bool (a regressor may answer NaN, which is not null)
    confidence: np.ndarray            # float64, NaN where null
    has_confidence: np.ndarray        # bool
    scores_span: Span
    flags_span: Span
    sources_span: Span                # feature_sources
    numeric: NumericColumns
    categorical: CategoricalColumns

    def __len__(self) -> int:
        return len(self.indices)

    @cached_property
    def request_id(self) -> list[str]:
        return self._texts(self.request_id_span)

    @cached_property
    def entity_id(self) -> list[str]:
        return self._texts(self.entity_id_span)

    def records(self) -> list[dict]:
        """Every record as fastavro decodes it, less inference_us and batch_size, built a batch at
        a time (each column becomes a list once)."""
        b = self.buffer
        return [{"request_id": rid, "entity_id": eid, "model": model, "model_version": version, "role": ROLES[role],
                 "event_time": event_time, "predicted_at": predicted_at, "label": label, "value": value,
                 "scores": _scores_at(b, scores), "confidence": confidence,
                 "flags": _flags_at(b, flags), "numeric": numeric, "categorical": categorical,
                 "feature_sources": _sources_at(b, sources)}
                for rid, eid, model, version, role, event_time, predicted_at, label, value, scores, confidence,
                flags, numeric, categorical, sources in zip(
                    self.request_id, self.entity_id, self.model.strings(), self.model_version.strings(),
                    self.role.tolist(), self.event_time.tolist(), self.predicted_at.tolist(), self.label.strings(),
                    _nullable(self.value, self.has_value), self.scores_span.start.tolist(),
                    _nullable(self.confidence, self.has_confidence), self.flags_span.start.tolist(),
                    self.numeric.records(), self.categorical.records(), self.sources_span.start.tolist())]

    def _texts(self, span: Span) -> list[str]:
        b = self.buffer
        return [b[s:e].decode() for s, e in zip(span.start.tolist(), span.end.tolist())]


@dataclass
class DecodedPredictions:
    columns: PredictionColumns                      # what the columnar path accepted
    records: list[tuple[int, dict]]                 # (batch position, record) decoded by fastavro
    failures: list[tuple[int, DecodeFailure]]       # (batch position, why) of what nothing could decode


class PredictionDecoder:
    def __init__(self, serde: AvroSerde, compiled: bool = True):
        """`compiled`: read `records` on the compiled core where it is built."""
        self.serde = serde
        self.header = serde._header
        self.enabled = serde.field_kinds() == FIELDS and agrees(lambda v: self.columns(v).records(), serde, SAMPLES)
        self.path = runs(compiled and self.enabled)
        if self.path == "compiled" and not agrees(self._compiled, serde, SAMPLES):
            self.path = "python"

    def decode(self, values: list[bytes | None]) -> DecodedPredictions:
        columns = self.columns([v or b"" for v in values] if self.enabled else [])
        taken = set(columns.indices.tolist())
        records, failures = self._by_fastavro(values, [i for i in range(len(values)) if i not in taken])
        return DecodedPredictions(columns, records, failures)

    def records(self, values: list[bytes | None]) -> tuple[list[tuple[int, dict]], list[tuple[int, DecodeFailure]]]:
        """Every record of the batch as a dict, in batch order ((batch position, record); fastavro's
        fields less inference_us and batch_size where a fast path read it), and what nothing could
        decode: on the compiled core (`path`), else through the columns."""
        if self.path == "compiled":
            done, rest = compiled_records.decode_predictions(values, self.header)
            records, failures = self._by_fastavro(values, rest)
        else:
            decoded = self.decode(values)
            done = list(zip(decoded.columns.indices.tolist(), decoded.columns.records()))
            records, failures = decoded.records, decoded.failures
        return (sorted(done + records, key=operator.itemgetter(0)) if records else done), failures

    def _compiled(self, values: list[bytes]) -> list[dict]:
        return [r for _, r in compiled_records.decode_predictions(values, self.header)[0]]

    def _by_fastavro(self, values: list[bytes | None], rest: list[int]) -> tuple[list, list]:
        records, failures = [], []
        for i, decoded in zip(rest, self.serde.decode_many([values[i] for i in rest])):
            (failures if isinstance(decoded, DecodeFailure) else records).append((i, decoded))
        return records, failures

    def columns(self, values: list[bytes]) -> PredictionColumns:
        """The records of `values` the columnar path accepts (the others are left out)."""
        batch = Batch(values, pad=PACKED_BYTES + 8)
        cur = batch.cursor
        batch.check_header(self.header)
        request_id, entity_id, model, version = (_text(cur) for _ in range(4))
        role = cur.long()
        cur.ok &= (role >= 0) & (role < len(ROLES))
        event_time, predicted_at = cur.long(), cur.long()
        label, has_label = _union(cur, _text)
        value, has_value = _union(cur, _double)
        scores = _block(cur, _score)
        confidence, has_confidence = _union(cur, _double)
        flags = _block(cur, _text)
        numeric = _map_layouts(cur, batch.joined, strings=False)
        categorical = _map_layouts(cur, batch.joined, strings=True)
        sources = _block(cur, lambda c: (_text(c), _text(c)))
        cur.long()                                                    # inference_us
        batch_size = cur.long()
        cur.ok &= (batch_size >= -2 ** 31) & (batch_size < 2 ** 31)
        cur.ok &= cur.p == batch.ends
        rows = np.flatnonzero(cur.ok)
        return PredictionColumns(
            batch.joined, rows, request_id.take(rows), entity_id.take(rows), _factor(cur, model, rows),
            _factor(cur, version, rows), role[rows], event_time[rows], predicted_at[rows],
            _factor(cur, label, rows, has_label), np.where(has_value, value, np.nan)[rows], has_value[rows],
            np.where(has_confidence, confidence, np.nan)[rows], has_confidence[rows], scores.take(rows),
            flags.take(rows), sources.take(rows), numeric.build(rows), categorical.build(rows))


class _Layouts:
    """A map field while it is read: per layout (key order) the records that have it and their values."""

    def __init__(self, cur: Cursor, strings: bool):
        self.cursor = cur
        self.strings = strings
        self.names: dict[str, int] = {}
        self.layout = np.zeros(len(cur.p), dtype=np.int64)
        self.layouts: list[list[int]] = []
        self.parts: list[tuple[np.ndarray, list]] = []        # (records, per key: what was read)

    def add(self, keys: list[str], rows: np.ndarray, read: list) -> None:
        columns = [self.names.setdefault(k, len(self.names)) for k in keys]
        self.layout[rows] = len(self.layouts)
        self.layouts.append(columns)
        self.parts.append((rows, read))

    def build(self, rows: np.ndarray) -> NumericColumns | CategoricalColumns:
        """The columns of records `rows` (all of which got a layout)."""
        n, k = len(self.layout), len(self.names)
        names = list(self.names)
        if self.strings:
            starts, ends = np.zeros((n, k), dtype=np.int64), np.zeros((n, k), dtype=np.int64)
            present = np.zeros((n, k), dtype=bool)
            for (records, read), columns in zip(self.parts, self.layouts):
                for (start, end, has), c in zip(read, columns):
                    starts[records, c], ends[records, c], present[records, c] = start, end, has
            factors = [factor(self.cursor, starts[rows, c], ends[rows, c], present[rows, c]) for c in range(k)]
            return CategoricalColumns(names, self.layout[rows], self.layouts, factors)
        values, null = np.full((n, k), np.nan), np.zeros((n, k), dtype=bool)
        for (records, read), columns in zip(self.parts, self.layouts):
            for (value, has), c in zip(read, columns):
                values[records, c], null[records, c] = np.where(has, value, np.nan), ~has
        return NumericColumns(names, self.layout[rows], self.layouts, values[rows], null[rows])


def _map_layouts(cur: Cursor, joined: bytes, strings: bool) -> _Layouts:
    """Read a map<union<null, double|string>> field of every record, layout by layout: the first
    record not yet read gives the key order, then all records with that order are read at once."""
    out = _Layouts(cur, strings)
    start = cur.p
    end = start.copy()
    todo = np.flatnonzero(cur.ok)
    for _ in range(2 * MAX_LAYOUTS):               # a try that fails takes one record to fastavro
        if not todo.size or len(out.layouts) == MAX_LAYOUTS:
            break
        try:
            keys = list(read_map_at(joined, int(start[todo[0]]), strings)[0])
        except (IndexError, UnicodeDecodeError, struct.error):
            keys = None
        sub = cur.sub(todo)
        read = _walk(sub, keys, strings) if keys is not None else []
        if keys is None or not sub.ok[0]:           # not one block of distinct keys
            cur.ok[todo[0]] = False
            todo = todo[1:]
            continue
        rows = todo[sub.ok]
        out.add(keys, rows, [tuple(a[sub.ok] for a in r) for r in read])
        end[rows] = sub.p[sub.ok]
        todo = todo[~sub.ok]
    cur.ok[todo] = False
    cur.move(end)
    return out


def _walk(cur: Cursor, keys: list[str], strings: bool) -> list[tuple]:
    """Read a map whose keys are `keys` in this order, in one block: per key (value, present) or
    (start, end, present); records laid out otherwise are refused."""
    count = cur.long()
    cur.ok &= count == len(keys)
    read = []
    for key in keys:
        raw = np.frombuffer(string(key), dtype=np.uint8)
        cur.ok &= (cur.windows(cur.p, len(raw)) == raw).all(axis=1)
        cur.move(cur.p + len(raw))
        got, present = _union(cur, _text if strings else _double)
        read.append((got.start, got.end, present) if strings else (got, present))
    if keys:
        cur.ok &= cur.buf[cur.p] == 0
        cur.move(cur.p + 1)
    return read


def _union(cur: Cursor, read: Callable[[Cursor], T]) -> tuple[T, np.ndarray]:
    """A union<null, T>: (what `read` read, garbage where null; present)."""
    branch = cur.buf[cur.p]
    present = branch == 2
    cur.ok &= present | (branch == 0)
    after = cur.p + 1
    cur.move(after)
    ok = cur.ok.copy()
    cur.ok &= present                              # nothing to check where null
    got = read(cur)
    cur.ok = np.where(present, cur.ok, ok)
    cur.move(np.where(present, cur.p, after))
    return got, present


def _text(cur: Cursor) -> Span:
    """A string, checked as UTF-8."""
    start, end = cur.span()
    cur.check_utf8((start, end))
    return Span(start, end)


def _double(cur: Cursor) -> np.ndarray:
    out = cur.doubles(cur.p)
    cur.move(cur.p + 8)
    return out


def _score(cur: Cursor) -> None:
    _text(cur)
    cur.move(cur.p + 8)


def _block(cur: Cursor, entry: Callable[[Cursor], object]) -> Span:
    """An array or map in one block (count, entries, 0), each entry read by `entry`; its span.
    A negative count (block with a byte size) or several blocks are left to fastavro."""
    start = cur.p
    count = cur.long()
    cur.ok &= (count >= 0) & (count <= MAX_ENTRIES)
    count = np.where(cur.ok, count, 0)
    for i in range(int(count.max(initial=0))):
        rows = np.flatnonzero(count > i)
        sub = cur.sub(rows)
        entry(sub)
        cur.put(rows, sub)
    has = count > 0
    cur.ok &= ~has | (cur.buf[cur.p] == 0)
    cur.move(cur.p + has)
    return Span(start, cur.p)


def _nullable(values: np.ndarray, present: np.ndarray) -> list[float | None]:
    return [v if has else None for v, has in zip(values.tolist(), present.tolist())]


# Readers of the blocks the columnar path checked (one block each, at `p`). Most are empty.

def _scores_at(b: bytes, p: int) -> dict[str, float]:
    out = {}
    count, p = read_long(b, p)
    for _ in range(count):
        n, p = read_long(b, p)
        out[b[p:p + n].decode()] = DOUBLE.unpack_from(b, p + n)[0]
        p += n + 8
    return out


def _flags_at(b: bytes, p: int) -> list[str]:
    out = []
    count, p = read_long(b, p) if b[p] else (0, p)
    for _ in range(count):
        n, p = read_long(b, p)
        out.append(b[p:p + n].decode())
        p += n
    return out


def _sources_at(b: bytes, p: int) -> dict[str, str]:
    out = {}
    count, p = read_long(b, p) if b[p] else (0, p)
    for _ in range(count):
        n, p = read_long(b, p)
        key, p = b[p:p + n].decode(), p + n
        n, p = read_long(b, p)
        out[key], p = b[p:p + n].decode(), p + n
    return out


def _factor(cur: Cursor, span: Span, rows: np.ndarray, present: np.ndarray | None = None) -> Factor:
    return factor(cur, span.start[rows], span.end[rows], None if present is None else present[rows])
