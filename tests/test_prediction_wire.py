"""The columnar Prediction decoder agrees with fastavro on every record it accepts, hands every
other record to fastavro (which decodes it or names why not), and builds its records as fastavro
does (property tests, hostile bytes included)."""
import math
import random
import struct

import numpy as np
from flywheel.schemas import AvroSerde
from flywheel.schemas.errors import SerdeError
from flywheel.schemas.wire.prediction import MAX_LAYOUTS, PredictionDecoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.avro_strategies import records as any_record

NAMES = ["x0", "feature_1", "ß2"]
CATEGORIES = ["c", "seg"]
texts = st.text(max_size=20)
doubles = st.floats(width=64)           # NaN included: a value, not a null


@st.composite
def predictions(draw):
    """Predictions as one producer writes them (the batch's key order, nulls here and there),
    or with maps of any keys."""
    record = draw(any_record("Prediction"))
    record["value"], record["confidence"] = (draw(st.one_of(st.none(), doubles)) for _ in range(2))
    if draw(st.booleans()):
        record["numeric"] = {n: draw(st.one_of(st.none(), doubles)) for n in NAMES}
        record["categorical"] = {c: draw(st.one_of(st.none(), st.sampled_from(["a", "b", "é"]))) for c in CATEGORIES}
    if draw(st.booleans()):
        items = list(record["numeric"].items())
        random.Random(draw(st.integers())).shuffle(items)
        record["numeric"] = dict(items)
    return record


def damaged(draw, raw: bytes) -> bytes:
    raw = bytearray(raw)
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "flip", "extra", "schema id", "noise"]))
    if damage == "cut":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif damage == "flip":
        raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
    elif damage == "extra":
        raw += draw(st.binary(min_size=1, max_size=5))
    elif damage == "schema id":
        raw[1:5] = struct.pack(">I", draw(st.integers(0, 2 ** 32 - 1)))
    elif damage == "noise":
        raw = raw[:5] + draw(st.binary(max_size=60))
    return bytes(raw)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _decodes(serde: AvroSerde, value: bytes | None) -> dict | None:
    try:
        return serde.decode(value)
    except SerdeError:
        return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(predictions(), min_size=1, max_size=12), data=st.data())
def test_columns_agree_with_fastavro_and_everything_else_goes_to_it(registry, records, data):
    serde = AvroSerde(registry, "Prediction")
    decoder = PredictionDecoder(serde)
    assert decoder.enabled
    values = [damaged(data.draw, serde.encode(r)) for r in records]
    if data.draw(st.booleans()):
        values.append(None)                                 # a tombstone
    out = decoder.decode(values)
    cols = out.columns
    seen = cols.indices.tolist() + [i for i, _ in out.records] + [i for i, _ in out.failures]
    assert sorted(seen) == list(range(len(values)))         # each record once, on one path
    for j, (i, mine) in enumerate(zip(cols.indices.tolist(), cols.records())):
        truth = serde.decode(values[i])
        assert _same(mine, {k: truth[k] for k in mine}), (mine, truth)
        predicted = truth["value"] if truth["value"] is not None else truth["confidence"]
        assert _same(float(np.where(cols.has_value, cols.value, cols.confidence)[j]),
                     math.nan if predicted is None else predicted)
    for i, record in out.records:
        assert _same(record, serde.decode(values[i]))
    for i, failure in out.failures:
        assert _decodes(serde, values[i]) is None and failure.reason
    intact = all(v == serde.encode(r) for v, r in zip(values, records)) and len(values) == len(records)
    layouts = {tuple(r["numeric"]) for r in records} | {tuple(r["categorical"]) for r in records}
    if intact and len(layouts) <= MAX_LAYOUTS and all(
            len(r["scores"]) <= 64 and len(r["flags"]) <= 64 and len(r["feature_sources"]) <= 64 for r in records):
        assert len(cols) == len(records), "refused an intact record"


def test_a_producers_batch_with_nulls_is_read_as_columns_in_full(registry):
    serde = AvroSerde(registry, "Prediction")
    rng = np.random.default_rng(3)
    records = []
    for i in range(200):
        numeric = {n: (None if rng.random() < 0.1 else float(rng.normal())) for n in NAMES}
        records.append({"request_id": f"r{i}", "entity_id": "e", "model": "m" if i % 3 else "other",
                        "model_version": "1", "role": "LIVE", "event_time": i, "predicted_at": 1000 + i,
                        "label": ["yes", "no", None][i % 3], "value": None, "scores": {"yes": 0.5, "no": 0.5},
                        "confidence": 0.5, "flags": [], "numeric": numeric,
                        "categorical": {"c": ["a", "b", None][i % 3]}, "feature_sources": {},
                        "inference_us": 5, "batch_size": 200})
    out = PredictionDecoder(serde).decode([serde.encode(r) for r in records])
    cols = out.columns
    assert len(cols) == 200 and out.records == [] and out.failures == []
    x0 = cols.numeric.columns(np.arange(200))["x0"]
    assert [None if math.isnan(v) else v for v in x0.tolist()] == [r["numeric"]["x0"] for r in records]
    assert cols.categorical.columns(np.arange(200))["c"].counts() == {"a": 67, "b": 67, None: 66}
    assert [cols.model.values[c] for c in cols.model.codes] == [r["model"] for r in records]
    assert cols.label.counts() == {"yes": 67, "no": 67, None: 66}


def test_a_schema_it_was_not_written_for_leaves_every_record_to_fastavro(registry):
    serde = AvroSerde(registry, "FeedbackRecord")
    decoder = PredictionDecoder(serde)
    record = {"request_id": "r", "entity_id": "e", "model": "m", "model_version": "1", "event_time": 1,
              "predicted_at": 2, "labelled_at": 3}
    out = decoder.decode([serde.encode(record)])
    assert not decoder.enabled and len(out.columns) == 0
    assert [i for i, _ in out.records] == [0] and out.records[0][1]["labelled_at"] == 3
