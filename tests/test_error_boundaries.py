"""Third-party errors become ours where they enter: a library's exception type never reaches a
caller of Flywheel's, so `except flywheel.errors.X` is enough."""
import pytest
from flywheel.streams.clients import make_producer
from flywheel.streams.delivery import TrackedProducer
from flywheel.streams.errors import BadRequest, RecordTooLarge
from flywheel.streams.labels import LabelPublisher
from flywheel.streams.publisher import Request

from flywheel.errors import BadInput, BadRecord


def test_a_record_the_kafka_client_refuses_as_too_big_is_that_records_content(kafka, make_topics):
    topic = make_topics().labels
    out = TrackedProducer(make_producer(kafka, **{"message.max.bytes": 2_000}))
    with pytest.raises(RecordTooLarge, match=f"record for {topic} is larger") as refused:
        out.produce(topic, b"x" * 10_000, key=b"k")
    assert isinstance(refused.value, BadRecord) and refused.value.reason == "oversize"
    out.produce(topic, b"small", key=b"k")          # the producer goes on with the next record
    assert out.flush(10) == 1


@pytest.mark.parametrize("build", [
    lambda: Request.from_dict({"x": 1.0}),
    lambda: Request.from_dict({"features": {"x": 1.0}, "colour": "red"}),
])
def test_a_malformed_request_is_the_callers_mistake(build):
    with pytest.raises(BadRequest) as refused:
        build()
    assert isinstance(refused.value, BadInput) and isinstance(refused.value, ValueError)


def test_a_label_with_both_or_neither_of_label_and_value_is_the_callers_mistake(kafka, registry):
    labels = LabelPublisher(kafka, registry)
    for both_or_neither in ({}, {"label": "spam", "value": 1.0}):
        with pytest.raises(BadRequest, match="give exactly one of label or value"):
            labels.label("r1", **both_or_neither)
