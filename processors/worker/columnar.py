"""Whole-batch decoding of InferenceRequests as numpy columns.

The per-record parser (wire.RequestParser) walks one record at a time in Python, about 4 us for
32 named features. Here a batch is one byte array and each field's position is one int64 column
over all records: varints are read for every record together, the `numeric` map is checked
against the model's template and its doubles gathered in one step, `dense` is viewed as float32.
Only the parts that vary in shape (a non-empty categorical or metadata map) are walked in Python,
and only for the records that have them.

A record is accepted only if every check passes and its last field ends exactly where the
record ends; anything else (another schema id, another key order, nulls, a truncated or
malformed record...) is left to the per-record paths, which also name the dead-letter reason.
"""
from dataclasses import dataclass, fields

import numpy as np
from flywheel.processors.worker.wire import NumericTemplate
from flywheel.schemas.wire.cursor import Batch, Cursor
from flywheel.schemas.wire.primitives import read_map_at, skip_string_map


@dataclass
class Columns:
    """Decoded requests of one batch as parallel lists (and rows of `values`), in batch order."""

    indices: list[int]              # batch positions
    values: np.ndarray              # (rows, k) float64: numeric features in model order
    from_dense: np.ndarray          # bool per row: values came from `dense` (numeric_raw is rebuilt)
    checked: np.ndarray             # bool per row: the feature spec was checked already (NaN = missing)
    request_ids: list[str]
    entity_ids: list[str]
    event_times: list[int]
    ids_raw: list[bytes]            # encoded request_id + entity_id, copied into the Prediction
    event_times_raw: list[bytes]
    numeric_raw: list[bytes]        # encoded numeric map (the features the prediction saw)
    categorical_raw: list[bytes]
    sources_raw: list[bytes]        # encoded feature_sources (an empty map when not enriched)
    sources: list[dict | None]
    categorical: list[dict]
    numeric_dicts: list[dict | None]  # the decoded numeric map, where a slow path decoded one

    def __len__(self) -> int:
        return len(self.indices)

    def take(self, keep: list[int]) -> dict:
        """The fields of rows `keep`, in that order (keyword arguments for a Columns)."""
        out = {f.name: [getattr(self, f.name)[j] for j in keep] for f in fields(Columns) if f.name not in ARRAYS}
        return out | {name: getattr(self, name)[keep] for name in ARRAYS}

    @staticmethod
    def merge(a: "Columns", b: "Columns") -> "Columns":
        both = {f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(Columns) if f.name not in ARRAYS}
        both |= {name: np.concatenate([getattr(a, name), getattr(b, name)]) for name in ARRAYS}
        joined = Columns(**both)
        return Columns(**joined.take(np.argsort(joined.indices, kind="stable").tolist()))


ARRAYS = ("values", "from_dense", "checked")


class ColumnarParser:
    def __init__(self, header: bytes, template: NumericTemplate):
        self.header = header
        self.template = template
        self.k = len(template.names)

    def parse(self, values: list[bytes]) -> Columns:
        batch = Batch(values, self.template.window + 4 * self.k)
        cur = batch.cursor
        ids_start = batch.check_header(self.header)
        rid = cur.span()
        eid = cur.span()
        cur.check_utf8(cur.span())          # model: the topic says which; only checked
        et_start = cur.p
        event_times = cur.long()
        et_end = num_start = cur.p
        templated, dense_only, bodies = self._numeric(cur)
        num_end = cat_start = cur.p
        categorical = self._categorical(cur, batch.joined)
        cat_end = cur.p
        dense = self._dense(cur)
        self._metadata(cur, batch.joined)
        cur.ok &= cur.p == batch.ends
        values_out, from_dense = self._values(cur, bodies, templated, dense_only, dense)
        rows = np.flatnonzero(cur.ok)
        return self._columns(batch.joined, rows, values_out[rows], from_dense[rows], rid, eid, ids_start,
                             event_times, (et_start, et_end), (num_start, num_end), (cat_start, cat_end), categorical)

    def _numeric(self, cur: Cursor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Walk the numeric map: (laid out as the template, empty, each record's map body as
        `template.window` bytes). Other layouts are refused."""
        t = self.template
        count = cur.long()
        templated = (count == self.k) & (self.k > 0)
        empty = count == 0
        body = cur.p
        bodies = cur.windows(body, t.window)
        if self.k:
            templated &= ((bodies.view("<u8") & t.word_mask) == t.word_expected).all(axis=1)
        cur.ok &= templated | empty
        cur.move(np.where(templated, body + t.length + 1, body))
        return templated, empty, bodies

    def _categorical(self, cur: Cursor, joined: bytes) -> list[dict]:
        out: list[dict] = [{} for _ in range(len(cur.p))]
        at = cur.p
        p = np.where(cur.buf[at] == 0, at + 1, at)
        for i in np.flatnonzero(cur.ok & (cur.buf[at] != 0)).tolist():
            try:
                out[i], end = read_map_at(joined, int(at[i]), strings=True)
                p[i] = end
            except (IndexError, UnicodeDecodeError):
                cur.ok[i] = False
        cur.move(p)
        return out

    def _dense(self, cur: Cursor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(present, start, end) of the `dense` union."""
        branch = cur.buf[cur.p]
        present = branch == 2
        cur.ok &= present | (branch == 0)
        after = cur.p + 1
        cur.move(after)
        start, end = cur.span()
        cur.move(np.where(present, end, after))
        return present, start, end

    def _metadata(self, cur: Cursor, joined: bytes) -> None:
        at = cur.p
        p = at + 1
        for i in np.flatnonzero(cur.ok & (cur.buf[at] != 0)).tolist():
            try:
                p[i] = skip_string_map(joined, int(at[i]))
            except (IndexError, UnicodeDecodeError):
                cur.ok[i] = False
        cur.move(p)

    def _values(self, cur: Cursor, bodies: np.ndarray, templated: np.ndarray, dense_only: np.ndarray,
                dense: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Each row's numeric features: from the map (no dense beside it) or from dense alone."""
        present, start, end = dense
        n, k = len(templated), self.k
        from_map = templated & ~present
        from_dense = dense_only & present & (end - start == 4 * k) & (k > 0)
        cur.ok &= from_map | from_dense
        values = np.zeros((n, k), dtype=np.float64)
        if k and from_map.any():
            rows = bodies[from_map]
            width = self.template.window
            doubles = np.ndarray((len(rows), width - 7), dtype="<f8", buffer=rows, strides=(width, 1))
            values[from_map] = doubles[:, self.template.value_offsets]
        if k and from_dense.any():
            raw = np.ascontiguousarray(cur.gather(start[from_dense], np.arange(4 * k)))
            values[from_dense] = raw.view("<f4").astype(np.float64)
        return values, from_dense

    @staticmethod
    def _columns(joined: bytes, rows: np.ndarray, values: np.ndarray, from_dense: np.ndarray, rid, eid,
                 ids_start: np.ndarray, event_times: np.ndarray, et, num, cat, categorical: list) -> Columns:
        def spans(a, b):
            return zip(a[rows].tolist(), b[rows].tolist())

        def sections(span):
            return [joined[a:b] for a, b in spans(*span)]

        def texts(span):
            try:
                return [joined[a:b].decode() for a, b in spans(*span)]
            except UnicodeDecodeError:
                return [_text(joined[a:b]) for a, b in spans(*span)]

        request_ids, entity_ids = texts(rid), texts(eid)
        good = [j for j, (r, e) in enumerate(zip(request_ids, entity_ids)) if r is not None and e is not None]
        if len(good) < len(rows):                   # invalid UTF-8: the per-record path reports it
            rows, values, from_dense = rows[good], values[good], from_dense[good]
            request_ids, entity_ids = [request_ids[j] for j in good], [entity_ids[j] for j in good]
        m = len(rows)
        return Columns(rows.tolist(), values, from_dense, np.zeros(m, dtype=bool), request_ids, entity_ids,
                       event_times[rows].tolist(), sections((ids_start, eid[1])), sections(et), sections(num),
                       sections(cat), [b"\x00"] * m, [None] * m, [categorical[i] for i in rows.tolist()], [None] * m)


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None
