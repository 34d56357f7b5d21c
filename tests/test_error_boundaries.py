"""Third-party errors become ours where they enter: a library's exception type never reaches a
caller of Flywheel's, so `except flywheel.errors.X` is enough."""
import pytest

from flywheel.errors import BadRecord
from streams.clients import make_producer
from streams.delivery import TrackedProducer
from streams.errors import RecordTooLarge


def test_a_record_the_kafka_client_refuses_as_too_big_is_that_records_content(kafka, make_topics):
    topic = make_topics().labels
    out = TrackedProducer(make_producer(kafka, **{"message.max.bytes": 2_000}))
    with pytest.raises(RecordTooLarge, match=f"record for {topic} is larger") as refused:
        out.produce(topic, b"x" * 10_000, key=b"k")
    assert isinstance(refused.value, BadRecord) and refused.value.reason == "oversize"
    out.produce(topic, b"small", key=b"k")          # the producer goes on with the next record
    assert out.flush(10) == 1
