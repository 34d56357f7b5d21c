"""The compiled core and the Python path give the same records, the same bytes and the same
refusals (dead-letter reasons) on hypothesis-generated records, damaged ones and the hostile
corpus's mutations included (property tests). The Python path is the reference; where the core
is not built (no C compiler at install) the tests of the compiled path skip and say so."""
import math
import re

import pytest
from flywheel.processors.joiner.join import prediction_record
from flywheel.schemas import AvroSerde
from flywheel.schemas.errors import SerdeError
from flywheel.schemas.registry import open_registry
from flywheel.schemas.wire.compiled import records as compiled_records
from flywheel.schemas.wire.compiled import runs
from flywheel.schemas.wire.feedback import FeedbackEncoder
from flywheel.schemas.wire.ground_truth import GroundTruthDecoder
from flywheel.schemas.wire.prediction import PredictionDecoder
from flywheel.schemas.wire.self_test import same
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.avro_strategies import records as any_record
from tests.test_feedback_wire import feedback, wrong
from tests.test_hostile_corpus import MUTATION, _mutate
from tests.test_prediction_wire import damaged, predictions

built = pytest.mark.skipif(compiled_records is None, reason="the compiled core is not built here (no C compiler "
                                                            "at install time): only the Python path runs")
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return open_registry(None, tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def prediction_paths(registry):
    serde = AvroSerde(registry, "Prediction")
    return serde, PredictionDecoder(serde, compiled=True), PredictionDecoder(serde, compiled=False)


@pytest.fixture(scope="module")
def label_paths(registry):
    serde = AvroSerde(registry, "GroundTruth")
    return serde, GroundTruthDecoder(serde, compiled=True), GroundTruthDecoder(serde, compiled=False)


@pytest.fixture(scope="module")
def feedback_paths(registry):
    serde = AvroSerde(registry, "FeedbackRecord")
    return serde, FeedbackEncoder(serde, compiled=True), FeedbackEncoder(serde, compiled=False)


def hostile(draw, raw: bytes) -> bytes:
    """A record damaged as the property tests of each path damage it, or as the hostile corpus does."""
    return _mutate(raw, draw(MUTATION)) if draw(st.booleans()) else damaged(draw, raw)


def as_joined(decoded: tuple[list, list]) -> tuple[list, list]:
    """What the joiner takes from a decoded batch: PredictionRecords by batch position, and
    (batch position, reason, detail) of each dead letter."""
    done, failures = decoded
    return ([(i, vars(prediction_record(r))) for i, r in done],
            [(i, f.reason, _no_address(f.detail)) for i, f in failures])


def _no_address(detail: str) -> str:
    """fastavro's detail names the buffer it read from, a new object each time."""
    return re.sub(r" at 0x[0-9a-f]+", "", detail)


@built
def test_every_codec_runs_compiled_where_the_core_is_built(prediction_paths, label_paths, feedback_paths):
    assert runs() == "compiled"
    for _, on, off in (prediction_paths, label_paths, feedback_paths):
        assert (on.path, off.path) == ("compiled", "python")


@built
@PROPERTY
@given(records=st.lists(predictions(), min_size=1, max_size=10), data=st.data())
def test_predictions_read_alike_on_both_paths(prediction_paths, records, data):
    serde, compiled, python = prediction_paths
    values = [hostile(data.draw, serde.encode(r)) for r in records]
    if data.draw(st.booleans()):
        values.append(None)                                 # a tombstone
    mine, reference = as_joined(compiled.records(values)), as_joined(python.records(values))
    assert same(mine[0], reference[0]), (mine, reference)
    assert mine[1] == reference[1]
    left = compiled_records.decode_predictions([serde.encode(r) for r in records], serde._header)[1]
    assert left == [], "the compiled path left an intact record to fastavro"


@built
@PROPERTY
@given(records=st.lists(any_record("GroundTruth"), min_size=1, max_size=10), data=st.data())
def test_labels_read_alike_on_both_paths(label_paths, records, data):
    serde, compiled, python = label_paths
    values = [hostile(data.draw, serde.encode(r)) for r in records] + [None]
    mine, reference = compiled.decode_many(values), python.decode_many(values)
    assert len(mine) == len(values)
    for a, b in zip(mine, reference):
        if isinstance(b, dict):
            assert same(a, b), (a, b)
        else:
            assert (a.reason, _no_address(a.detail)) == (b.reason, _no_address(b.detail))
    assert compiled_records.decode_ground_truths([serde.encode(r) for r in records], serde._header)[1] == []


def _either(encoder, record: dict) -> bytes | str:
    try:
        return encoder.encode(record)
    except SerdeError as e:
        return f"refused: {type(e).__name__}: {e}"


@built
@PROPERTY
@given(records=st.lists(feedback(), min_size=1, max_size=8), change=st.one_of(st.none(), wrong))
def test_feedback_is_written_alike_on_both_paths(feedback_paths, records, change):
    serde, compiled, python = feedback_paths
    if change is not None:
        records[0][change[0]] = change[1]
    for record in records:      # one encoder for all: nothing it keeps may leak between records
        assert _either(compiled, record) == _either(python, record) == _either(serde, record)


def test_the_python_path_is_kept_when_asked_for(prediction_paths, label_paths, feedback_paths):
    for _, _, python in (prediction_paths, label_paths, feedback_paths):
        assert python.path == "python"


@built
def test_a_record_the_core_is_not_sure_of_goes_to_fastavro(feedback_paths, label_paths):
    serde, compiled, python = feedback_paths
    record = {"request_id": "r", "entity_id": "e", "model": "m", "model_version": "1", "numeric": {"x": 1.0},
              "categorical": {}, "predicted_label": None, "predicted_value": 1.0, "scores": {}, "confidence": None,
              "true_label": None, "true_value": math.pi, "event_time": 1, "predicted_at": 2, "labelled_at": 3,
              "label_count": 1, "flags": ["replay"]}
    writer = compiled_records.FeedbackWriter(serde._header)
    for field, value in (("flags", ("replay",)), ("numeric", {"x": True})):   # fastavro writes one, refuses one
        with pytest.raises(compiled_records.Refused):
            writer.encode({**record, field: value})
        assert _either(compiled, {**record, field: value}) == _either(python, {**record, field: value})
    assert _either(compiled, {**record, "numeric": {"x": True}}).startswith("refused")
    labels, decoder, python = label_paths
    other_schema = b"\x00\x00\x01\x00\x00" + labels.encode({"request_id": "r", "labelled_at": 1})[5:]
    assert compiled_records.decode_ground_truths([other_schema], labels._header) == ([], [0])
    refused = decoder.decode_many([other_schema])
    assert refused == python.decode_many([other_schema]) and refused[0].reason == "unknown_schema"
