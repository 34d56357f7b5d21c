"""Avro wire-format fast paths for the hot loop, beside (never instead of) fastavro.

Per-record Avro in Python dominates a batched worker's time (tens of microseconds to decode a
request with 32 named features and to encode its Prediction, against well under one for the
model). Two observations remove most of it:

* Requests from one producer share a byte layout: the `numeric` map holds the same keys in the
  same order, so for a whole batch the keys can be checked and the doubles extracted as numpy
  columns at fixed offsets, with no per-feature Python.
* A Prediction repeats the request's `request_id`, `entity_id`, `event_time`, `numeric` and
  `categorical` with the same Avro types, so their encoded bytes are copied from the request;
  the rest is per-version constants and numpy-packed scores.

Anything that does not fit (another writer schema id, another key order, nulls, several map
blocks, a non-finite output...) takes the fastavro path, record by record. Both classes test
themselves against fastavro when built and switch themselves off if the schema has changed.
"""
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from flywheel.schemas import AvroSerde
from flywheel.schemas.wire.primitives import (
    categorical_map,
    double_map,
    numeric_map,
    optional_double,
    optional_string,
    read_length,
    read_long,
    read_map_at,
    skip_string_map,
    string,
    string_array,
    string_map,
    zigzag,
)

if TYPE_CHECKING:
    from flywheel.processors.worker.columnar import Columns
    from flywheel.processors.worker.outputs import Answers

ROLES = ("LIVE", "CANARY", "SHADOW")


@dataclass
class Parsed:
    request_id: str
    entity_id: str
    event_time: int
    ids_raw: bytes            # request_id + entity_id, encoded
    event_time_raw: bytes
    numeric_raw: bytes        # the whole encoded numeric map
    templated: bool           # numeric map laid out as the model's template (to verify per batch)
    categorical: dict
    categorical_raw: bytes
    dense: bytes | None
    numeric_dict: dict | None = None   # only when fastavro decoded the request
    sources_raw: bytes = b"\x00"       # encoded feature_sources (online enrichment)
    sources: dict | None = None


class NumericTemplate:
    """The byte layout of a `numeric` map holding exactly the model's numeric features, in its
    order, none null: key bytes fixed, 8-byte doubles at known offsets."""

    def __init__(self, names: list[str]):
        self.names = names
        parts, offsets, pos = [], [], 0
        for name in names:
            key = string(name) + b"\x02"
            parts.append(key + b"\x00" * 8)
            offsets.append(pos + len(key))
            pos += len(key) + 8
        self.body = b"".join(parts)
        self.length = len(self.body)
        self.count = zigzag(len(names)) if names else b""
        template = np.frombuffer(self.body, dtype=np.uint8)
        is_value = np.zeros(self.length, dtype=bool)
        self.value_columns = np.concatenate([np.arange(o, o + 8) for o in offsets]) if offsets else np.empty(0, int)
        is_value[self.value_columns] = True
        self.key_columns = np.flatnonzero(~is_value)
        self.key_bytes = template[self.key_columns]
        # The same check for a whole batch (columnar.py): body and terminator as 8-byte words,
        # keys and terminator compared under a mask, doubles read at `value_offsets`.
        self.window = (self.length + 1 + 7) // 8 * 8
        mask = np.zeros(self.window, dtype=np.uint8)
        mask[self.key_columns] = 0xFF
        mask[self.length] = 0xFF
        expected = np.zeros(self.window, dtype=np.uint8)
        expected[:self.length] = template
        self.word_mask = mask.view("<u8")
        self.word_expected = (expected & mask).view("<u8")
        self.value_offsets = np.asarray(offsets, dtype=np.int64)

    def extract(self, bodies: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(rows whose keys match, their values as float64 (n, k)) for map bodies of `length` bytes."""
        raw = np.frombuffer(b"".join(bodies), dtype=np.uint8).reshape(len(bodies), self.length)
        ok = (raw[:, self.key_columns] == self.key_bytes).all(axis=1)
        values = np.ascontiguousarray(raw[:, self.value_columns]).view("<f8")
        return ok, values

    def encode(self, values: np.ndarray) -> list[bytes]:
        """Encoded maps (count, body, terminator) for rows of float64 values, vectorised."""
        n = len(values)
        if not self.names:
            return [b"\x00"] * n
        whole = np.frombuffer(self.count + self.body + b"\x00", dtype=np.uint8)
        size = len(whole)
        raw = np.tile(whole, (n, 1))
        doubles = np.ndarray((n, size - 7), dtype="<f8", buffer=raw, strides=(size, 1))
        doubles[:, len(self.count) + self.value_offsets] = values
        flat = raw.tobytes()
        return [flat[i:i + size] for i in range(0, n * size, size)]


class RequestParser:
    """Parses InferenceRequests written with the exact schema it knows (by schema id).

    A templated parse (a numeric map of the template's count and length) is provisional: its
    keys are confirmed for a batch at once by `NumericTemplate.extract`, and a record whose keys
    differ goes to fastavro whole, fields after the map included (they were read at the
    template's offsets)."""

    FIELDS = [("request_id", "string"), ("entity_id", "string"), ("model", "string"), ("event_time", "long"),
              ("numeric", "map"), ("categorical", "map"), ("dense", "union"), ("metadata", "map")]

    def __init__(self, serde: AvroSerde, template: NumericTemplate):
        self.serde = serde
        self.template = template
        self.header = serde._header
        self.enabled = serde.field_kinds() == self.FIELDS and self._self_test()

    def parse(self, v: bytes) -> Parsed | None:
        if not self.enabled or v[:5] != self.header:
            return None
        try:
            return self._parse(v)
        except (IndexError, UnicodeDecodeError):
            return None

    def _parse(self, v: bytes) -> Parsed | None:
        n = v[5]                                 # one-byte lengths (< 64) inline, others via read_length
        n, p = ((n >> 1), 6) if n < 0x80 and not n & 1 else read_length(v, 5)
        request_id = v[p:p + n].decode()
        p += n
        n = v[p]
        n, p = ((n >> 1), p + 1) if n < 0x80 and not n & 1 else read_length(v, p)
        entity_id = v[p:p + n].decode()
        p += n
        ids_end = p
        n = v[p]
        n, p = ((n >> 1), p + 1) if n < 0x80 and not n & 1 else read_length(v, p)
        v[p:p + n].decode()                      # model: the topic says which; must still be UTF-8
        p += n
        et_start = p
        event_time, p = read_long(v, p)
        et_end = num_start = p
        count = v[p]
        count, p = ((count >> 1) ^ -(count & 1), p + 1) if count < 0x80 else read_long(v, p)
        templated = False
        if count:
            t = self.template
            if count != len(t.names) or v[p + t.length] != 0:
                return None
            p += t.length + 1
            templated = True
        num_end = p
        cat_start = p
        if v[p] == 0:
            categorical = {}
            p += 1
        else:
            categorical, p = read_map_at(v, p, strings=True)
        cat_end = p
        branch = v[p] >> 1 if v[p] < 0x80 else -1
        p += 1
        dense = None
        if branch == 1:
            n, p = read_length(v, p)
            dense = v[p:p + n]
            p += n
        elif branch != 0:
            return None
        p = p + 1 if v[p] == 0 else skip_string_map(v, p)    # metadata: skipped, never echoed
        if p != len(v):
            return None
        return Parsed(request_id, entity_id, event_time, v[5:ids_end], v[et_start:et_end], v[num_start:num_end],
                      templated, categorical, v[cat_start:cat_end], dense)

    def _self_test(self) -> bool:
        names = self.template.names
        sample = {"request_id": "r-é", "entity_id": "e", "model": "m", "event_time": 1_700_000_000_123,
                  "numeric": {n: 0.5 + i for i, n in enumerate(names)}, "categorical": {"c": "x", "d": None},
                  "dense": b"\x01\x02", "metadata": {"k": "v"}}
        self.enabled = True
        got = self._parse(self.serde.encode(sample))
        if got is None or (got.request_id, got.entity_id, got.event_time, got.categorical, got.dense) != \
                ("r-é", "e", 1_700_000_000_123, {"c": "x", "d": None}, b"\x01\x02"):
            return False
        if names:
            ok, values = self.template.extract([got.numeric_raw[len(self.template.count):-1]])
            return bool(ok[0]) and values[0].tolist() == [0.5 + i for i in range(len(names))]
        return True


class PredictionWriter:
    """Encodes one version's Predictions for a batch, from the request's raw sections."""

    FIELDS = [("request_id", "string"), ("entity_id", "string"), ("model", "string"), ("model_version", "string"),
              ("role", "enum"), ("event_time", "long"), ("predicted_at", "long"), ("label", "union"),
              ("value", "union"), ("scores", "map"), ("confidence", "union"), ("flags", "array"),
              ("numeric", "map"), ("categorical", "map"), ("feature_sources", "map"), ("inference_us", "long"),
              ("batch_size", "int")]

    def __init__(self, serde: AvroSerde, model: str, version: str, role: str, labels: tuple[str, ...]):
        self.serde = serde
        self.header = serde._header
        self.constant = string(model) + string(version) + zigzag(ROLES.index(role))
        self.labels = labels
        self.label_bytes = [b"\x02" + string(label) for label in labels]
        fields = [("count", f"S{len(zigzag(len(labels)))}")]
        for i, label in enumerate(labels):
            fields += [(f"k{i}", f"S{len(string(label))}"), (f"v{i}", "<f8")]
        fields += [("end", "u1"), ("branch", "u1"), ("confidence", "<f8")]
        self.dtype = np.dtype(fields)
        self.enabled = serde.field_kinds() == self.FIELDS and self._self_test()

    def scores(self, probabilities: np.ndarray, confidence: np.ndarray) -> list[bytes]:
        """The encoded scores map + confidence union of each row."""
        n = len(probabilities)
        rows = np.zeros(n, dtype=self.dtype)
        rows["count"] = zigzag(len(self.labels))
        for i, label in enumerate(self.labels):
            rows[f"k{i}"] = string(label)
            rows[f"v{i}"] = probabilities[:, i]
        rows["branch"] = 2
        rows["confidence"] = confidence
        flat = rows.tobytes()
        size = self.dtype.itemsize
        return [flat[i * size:(i + 1) * size] for i in range(n)]

    def answer(self, top: int, scores: bytes) -> bytes:
        """label, value, scores and confidence of a classifier row packed by `scores()`."""
        return self.label_bytes[top] + b"\x00" + scores

    @staticmethod
    def answer_any(label: str | None, value: float | None, scores: dict[str, float], confidence: float | None) -> bytes:
        """The same fields for any row (regressors, non-finite outputs)."""
        return optional_string(label) + optional_double(value) + double_map(scores) + optional_double(confidence)

    def encode_batch(self, answers: "Answers", picked: list[int], batch: "Columns", predicted_at: int,
                     inference_us: int) -> list[bytes]:
        """The Predictions of rows `picked` of a batch, answer k being row picked[k]'s."""
        at, tail = zigzag(predicted_at), self.tail(inference_us, len(batch))
        head, constant = self.header, self.constant
        ids, et, num, cat, src = (batch.ids_raw, batch.event_times_raw, batch.numeric_raw, batch.categorical_raw,
                                  batch.sources_raw)
        flags = [self.flags(f) if f else b"\x00" for f in answers.flags]
        return [b"".join((head, ids[j], constant, et[j], at, answer, flag, num[j], cat[j], src[j], tail))
                for j, answer, flag in zip(picked, self._answers(answers), flags)]

    def _answers(self, answers: "Answers") -> list[bytes]:
        finite = answers.finite
        if answers.classifier and self.labels:
            packed = self.scores(answers.output, answers.confidence)
            if all(finite):
                return [self.label_bytes[t] + b"\x00" + p for t, p in zip(answers.top, packed)]
            return [self.answer(t, p) if ok else self._any(answers, k)
                    for k, (t, p, ok) in enumerate(zip(answers.top, packed, finite))]
        return [self._any(answers, k) for k in range(len(finite))]

    def _any(self, answers: "Answers", k: int) -> bytes:
        return self.answer_any(answers.label(k), answers.value(k), answers.scores(k), answers.confidence_of(k))

    def encode(self, ids_raw: bytes, event_time_raw: bytes, predicted_at: bytes, answer: bytes, flags: bytes,
               numeric_raw: bytes, categorical_raw: bytes, sources_raw: bytes, tail: bytes) -> bytes:
        return b"".join((self.header, ids_raw, self.constant, event_time_raw, predicted_at, answer, flags,
                         numeric_raw, categorical_raw, sources_raw, tail))

    @staticmethod
    def flags(flags: list[str]) -> bytes:
        return string_array(flags)

    @staticmethod
    def tail(inference_us: int, batch_size: int) -> bytes:
        return zigzag(inference_us) + zigzag(batch_size)

    def _self_test(self) -> bool:
        labels = self.labels or ("a", "b")
        p = np.linspace(0.1, 0.9, len(labels))
        record = {"request_id": "r-é", "entity_id": "e", "model": "", "model_version": "", "role": "LIVE",
                  "event_time": 1_700_000_000_123, "predicted_at": 1_700_000_000_456, "label": labels[0],
                  "value": None, "scores": dict(zip(labels, p.tolist())), "confidence": 0.25,
                  "flags": ["low_confidence"], "numeric": {"a": 1.5, "b": None}, "categorical": {"c": "x"},
                  "feature_sources": {"a": "request", "x": "online:g"}, "inference_us": 77, "batch_size": 3}
        constant, self.constant = self.constant, string("") + string("") + zigzag(0)
        try:
            common = (string("r-é") + string("e"), zigzag(1_700_000_000_123), zigzag(1_700_000_000_456))
            rest = (self.flags(["low_confidence"]), numeric_map({"a": 1.5, "b": None}), categorical_map({"c": "x"}),
                    string_map(record["feature_sources"]), self.tail(77, 3))
            answers = [self.answer_any(labels[0], None, record["scores"], 0.25)]
            if self.labels:
                answers.append(self.answer(0, self.scores(p[None, :], np.array([0.25]))[0]))
            regressor = {**record, "label": None, "value": -2.5, "scores": {}, "confidence": None}
            return all(self.encode(*common, a, *rest) == self.serde.encode(record) for a in answers) and \
                self.encode(*common, self.answer_any(None, -2.5, {}, None), *rest) == self.serde.encode(regressor)
        finally:
            self.constant = constant


class ReviewWriter:
    """Encodes ReviewItems from a prediction's raw request sections (same idea as PredictionWriter)."""

    FIELDS = [("request_id", "string"), ("entity_id", "string"), ("model", "string"), ("model_version", "string"),
              ("reasons", "array"), ("label", "union"), ("value", "union"), ("confidence", "union"),
              ("numeric", "map"), ("categorical", "map"), ("created_at", "long")]

    def __init__(self, serde: AvroSerde):
        self.serde = serde
        self.header = serde._header
        self.enabled = serde.field_kinds() == self.FIELDS and self._self_test()

    def encode(self, ids_raw: bytes, model: str, version: str, reasons: list[str], label: str | None,
               value: float | None, confidence: float | None, numeric_raw: bytes, categorical_raw: bytes,
               created_at: int) -> bytes:
        return b"".join((self.header, ids_raw, string(model), string(version), PredictionWriter.flags(reasons),
                         optional_string(label), optional_double(value), optional_double(confidence),
                         numeric_raw, categorical_raw, zigzag(created_at)))

    def _self_test(self) -> bool:
        record = {"request_id": "r-é", "entity_id": "e", "model": "m", "model_version": "v", "reasons": ["x", "y"],
                  "label": "a", "value": None, "confidence": 0.5, "numeric": {"a": 1.5, "b": None},
                  "categorical": {"c": "x"}, "created_at": 1_700_000_000_456}
        mine = self.encode(string("r-é") + string("e"), "m", "v", ["x", "y"], "a", None, 0.5,
                           numeric_map({"a": 1.5, "b": None}), categorical_map({"c": "x"}), 1_700_000_000_456)
        return mine == self.serde.encode(record)
