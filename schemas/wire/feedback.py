"""Encoding of FeedbackRecords (schemas/avro/FeedbackRecord.avsc) in Python, beside fastavro.

fastavro resolves each value of a `map<union<null, double>>` by testing it against the union's
branches, and a FeedbackRecord is mostly such maps: about 12 us a record with 8 features, the
joiner's largest single cost. Here the maps of doubles (features, scores) are packed by one
`struct` per key order, in which the names and branch bytes are constants and only the doubles
change; the encoded names of models and classes and whole categorical maps (few, and repeated
in every record) are remembered.

Only values of the schema's own types are written here (a long that fits in 64 bits, a str,
a float or int for a double, None for null); anything else raises, and the record is handed to
fastavro, which writes it or says why not. The encoder checks itself against fastavro when built
and switches itself off if the schema changed or the bytes differ. Where the compiled core
(schemas/wire/compiled) is built, it writes instead; this module stays the reference.
"""
import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

from flywheel.schemas.serde import AvroSerde
from flywheel.schemas.wire.compiled import records as compiled_records
from flywheel.schemas.wire.compiled import runs
from flywheel.schemas.wire.primitives import (
    NULL,
    SOME,
    categorical_map,
    numeric_map,
    optional_double,
    string,
    string_array,
    zigzag,
)

FIELDS = [("request_id", "string"), ("entity_id", "string"), ("model", "string"), ("model_version", "string"),
          ("numeric", "map"), ("categorical", "map"), ("predicted_label", "union"), ("predicted_value", "union"),
          ("scores", "map"), ("confidence", "union"), ("true_label", "union"), ("true_value", "union"),
          ("event_time", "long"), ("predicted_at", "long"), ("labelled_at", "long"), ("label_count", "int"),
          ("flags", "array")]
_NOT_ITS_TYPES = (TypeError, ValueError, OverflowError, AttributeError, UnicodeEncodeError, struct.error)
# What the compiled writer raises for a value it is not sure to write as fastavro does.
_NOT_SURE = _NOT_ITS_TYPES + ((compiled_records.Refused,) if compiled_records is not None else ())
KEPT = 4096              # encoded names, categorical maps and key orders remembered, of each


class FeedbackEncoder:
    def __init__(self, serde: AvroSerde, compiled: bool = True):
        """`compiled`: on the compiled core where it is built (this module's path is the reference)."""
        self.serde = serde
        self._names: dict[str, bytes] = {}
        self._categorical: dict[tuple, bytes] = {}
        self._numeric = _DoubleMaps(union=True)
        self._scores = _DoubleMaps(union=False)
        self.enabled = serde.field_kinds() == FIELDS and self._self_test(self._encode)
        self.path = runs(compiled and self.enabled)
        self._writer = compiled_records.FeedbackWriter(serde._header) if self.path == "compiled" else None
        if self._writer is not None and not self._self_test(self._writer.encode):
            self.path, self._writer = "python", None

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """A FeedbackRecord's fields (`vars(record)`) in the Confluent wire format."""
        if self._writer is not None:
            try:
                return self._writer.encode(record)
            except _NOT_SURE:
                return self.serde.encode(dict(record))
        if self.enabled:
            try:
                return self._encode(record)
            except _NOT_ITS_TYPES:
                pass                # not of the schema's types: fastavro writes it or names why not
        return self.serde.encode(dict(record))

    def _encode(self, r: Mapping[str, Any]) -> bytes:
        name, label = self._name, self._label
        return b"".join((
            self.serde._header, string(r["request_id"]), string(r["entity_id"]), name(r["model"]),
            name(r["model_version"]), self._numeric.encode(r["numeric"]), self._categorical_map(r["categorical"]),
            label(r["predicted_label"]), _optional_double(r["predicted_value"]), self._scores.encode(r["scores"]),
            _optional_double(r["confidence"]), label(r["true_label"]), _optional_double(r["true_value"]),
            _long(r["event_time"]), _long(r["predicted_at"]), _long(r["labelled_at"]), _int(r["label_count"]),
            string_array(r["flags"])))

    def _name(self, s: str) -> bytes:
        return _remembered(self._names, s, string)

    def _label(self, s: str | None) -> bytes:
        return NULL if s is None else SOME + self._name(s)

    def _categorical_map(self, values: dict) -> bytes:
        return _remembered(self._categorical, tuple(values.items()), lambda _: categorical_map(values))

    def _self_test(self, encode: Callable[[dict], bytes]) -> bool:
        samples = [
            {"request_id": "r-é", "entity_id": "", "model": "m", "model_version": "v" * 70,
             "numeric": {"x": 1.5, "ß": None, "n": math.nan, "i": -3}, "categorical": {"c": "p", "d": None},
             "predicted_label": "yes", "predicted_value": None, "scores": {"yes": 0.75, "no": 0.25},
             "confidence": 0.75, "true_label": "no", "true_value": None, "event_time": 1_700_000_000_123,
             "predicted_at": -5, "labelled_at": 2 ** 62, "label_count": 2, "flags": ["replay", "x"]},
            {"request_id": "r", "entity_id": "e", "model": "m", "model_version": "1", "numeric": {},
             "categorical": {}, "predicted_label": None, "predicted_value": -2.5, "scores": {}, "confidence": None,
             "true_label": None, "true_value": math.inf, "event_time": 0, "predicted_at": 1, "labelled_at": 2,
             "label_count": 1, "flags": []},
        ]
        try:
            return all(encode(r) == self.serde.encode(r) for r in samples)
        except _NOT_SURE:
            return False


class _DoubleMaps:
    """map<union<null,double>> (`union`) or map<double>, packed by one struct per key order."""

    def __init__(self, union: bool):
        self.union = union
        self._layouts: dict[tuple, tuple[struct.Struct, list]] = {}

    def encode(self, values: dict) -> bytes:
        if not values:
            return b"\x00"
        doubles = list(values.values())
        if bool in map(type, doubles):
            raise TypeError("a bool is not a double")   # struct would write 1.0; fastavro refuses it
        if self.union and None in doubles:
            return numeric_map(values)
        layout, args = _remembered(self._layouts, tuple(values), self._layout)
        args = args.copy()
        args[1:-1:2] = doubles
        return layout.pack(*args)

    def _layout(self, keys: tuple) -> tuple[struct.Struct, list]:
        """A struct of (name bytes, double) per key and the map's end, and its constant arguments:
        the first name's bytes begin with the map's count, each ends with the union's branch."""
        heads = [string(k) + (SOME if self.union else b"") for k in keys]
        heads[0] = zigzag(len(keys)) + heads[0]
        layout = struct.Struct("<" + "".join(f"{len(h)}sd" for h in heads) + "1s")
        return layout, [x for h in heads for x in (h, 0.0)] + [b"\x00"]


def _remembered(memory: dict, key, make):
    """memory[key], made by make(key) the first time; at most KEPT kept (then made every time)."""
    found = memory.get(key)
    if found is None:
        found = make(key)
        if len(memory) < KEPT:
            memory[key] = found
    return found


def _optional_double(v: float | None) -> bytes:
    if type(v) is bool:
        raise TypeError("a bool is not a double")
    return optional_double(v)


def _long(n: int) -> bytes:
    if type(n) is not int or not -2 ** 63 <= n < 2 ** 63:
        raise TypeError(f"not a long: {n!r}")
    return zigzag(n)


def _int(n: int) -> bytes:
    if type(n) is not int or not -2 ** 31 <= n < 2 ** 31:
        raise TypeError(f"not an int: {n!r}")
    return zigzag(n)
