"""The FeedbackRecord encoder writes exactly fastavro's bytes for every record of the schema, and
hands anything not of the schema's types to fastavro, which writes it or refuses it (property
tests)."""
import math

import pytest
from flywheel.schemas import AvroSerde
from flywheel.schemas.errors import SerdeError
from flywheel.schemas.wire.feedback import FeedbackEncoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.avro_strategies import records as any_record

doubles = st.one_of(st.floats(allow_nan=True), st.integers(-2 ** 60, 2 ** 60))
NAMES = ["x0", "feature_1", "ß2"]


@st.composite
def feedback(draw):
    """Any FeedbackRecord; often with the features of one model in one key order, nulls and
    non-finite values among them, as the joiner writes them."""
    record = draw(any_record("FeedbackRecord"))
    if draw(st.booleans()):
        record["numeric"] = {n: draw(st.one_of(st.none(), doubles)) for n in NAMES}
        record["scores"] = {"yes": draw(doubles), "no": draw(doubles)}
        record["categorical"] = {"c": draw(st.sampled_from(["a", "b", None]))}
    return record


def _either(serde: AvroSerde, record: dict) -> bytes | str:
    try:
        return serde.encode(record)
    except SerdeError as e:
        return f"refused: {type(e).__name__}"


@pytest.fixture
def serde(registry):
    return AvroSerde(registry, "FeedbackRecord")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(feedback(), min_size=1, max_size=8))
def test_every_record_is_encoded_as_fastavro_encodes_it(serde, records):
    encoder = FeedbackEncoder(serde)
    assert encoder.enabled
    for record in records:           # one encoder for all: what it remembers must not leak between records
        assert encoder.encode(record) == serde.encode(record)
        assert serde.decode(encoder.encode(record)).keys() == record.keys()


wrong = st.sampled_from([("numeric", {"x": "1.5"}), ("numeric", {"x": [1.0]}), ("scores", {"yes": None}),
                         ("categorical", {"c": 3}), ("event_time", 2 ** 63), ("event_time", 1.5),
                         ("label_count", 2 ** 31), ("label_count", True), ("request_id", b"r"),
                         ("true_label", 7), ("flags", [None]), ("predicted_value", "high"),
                         ("entity_id", "\ud800"), ("confidence", math.inf), ("numeric", {"x": 10 ** 400}),
                         ("numeric", {"x": True}), ("scores", {"yes": False}), ("true_value", True)])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=feedback(), change=wrong)
def test_a_value_of_another_type_goes_to_fastavro(serde, record, change):
    field, value = change
    record[field] = value
    encoder = FeedbackEncoder(serde)
    try:
        mine = encoder.encode(record)
    except SerdeError as e:
        mine = f"refused: {type(e).__name__}"
    assert mine == _either(serde, record)


def test_a_schema_it_was_not_written_for_leaves_every_record_to_fastavro(registry):
    serde = AvroSerde(registry, "GroundTruth")
    encoder = FeedbackEncoder(serde)
    record = {"request_id": "r", "model": None, "label": "yes", "value": None, "labelled_at": 3, "source": "s"}
    assert not encoder.enabled
    assert encoder.encode(record) == serde.encode(record)
