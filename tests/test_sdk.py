"""The client SDK against the real embedded broker."""
import time

import pytest
from flywheel.schemas.errors import FeatureProblem
from flywheel.schemas.features import Feature, FeatureSpec
from flywheel.streams.errors import PredictTimeout
from flywheel.streams.labels import LabelPublisher
from flywheel.streams.predictor import Predictor
from flywheel.streams.publisher import Publisher, Request
from flywheel.streams.subscriber import Subscriber


def test_ten_thousand_requests_arrive_once_each(kafka, registry, make_topics):
    catalog = make_topics("m")
    publisher = Publisher(kafka, registry, "m")
    sent = publisher.publish_many(Request({"x": float(i), "colour": "red"}, entity_id=f"e{i % 97}")
                                  for i in range(10_000))
    assert publisher.flush() == 10_000
    with Subscriber(kafka, registry, catalog.requests("m"), "InferenceRequest", start="earliest") as sub:
        got = sub.read(10_000, timeout=60)
        assert sub.poll_batch(100, 1.0) == []  # nothing beyond the 10,000
    ids = [r.value["request_id"] for r in got]
    assert len(ids) == 10_000 and set(ids) == set(sent)
    partitions = {r.partition for r in got}
    assert len(partitions) > 1  # keyed by entity id across partitions
    by_entity = {}
    for r in got:  # one entity's requests stay on one partition, in order
        by_entity.setdefault(r.value["entity_id"], set()).add(r.partition)
    assert all(len(p) == 1 for p in by_entity.values())


def test_group_subscriber_commits_and_resumes(kafka, registry, make_topics):
    catalog = make_topics("m")
    publisher = Publisher(kafka, registry, "m")
    publisher.publish_many({"x": float(i)} for i in range(50))
    publisher.flush()
    with Subscriber(kafka, registry, catalog.requests("m"), "InferenceRequest", start="earliest",
                    group_id="g") as sub:
        first = sub.read(50, timeout=30)
        sub.commit()
    publisher.publish_many({"x": float(i)} for i in range(50, 60))
    publisher.flush()
    with Subscriber(kafka, registry, catalog.requests("m"), "InferenceRequest", start="earliest",
                    group_id="g") as sub:
        second = sub.read(10, timeout=30)
    assert len(first) == 50
    assert sorted(r.value["numeric"]["x"] for r in second) == [float(i) for i in range(50, 60)]


def test_subscriber_from_now_and_from_a_time(kafka, registry, make_topics):
    catalog = make_topics("m")
    publisher = Publisher(kafka, registry, "m")
    publisher.publish_many({"x": 1.0} for _ in range(20))
    publisher.flush()
    time.sleep(0.05)
    middle = int(time.time() * 1000)
    time.sleep(0.05)
    late_now = Subscriber(kafka, registry, catalog.requests("m"), "InferenceRequest", start="latest")
    later = publisher.publish_many({"x": 2.0} for _ in range(5))
    publisher.flush()
    from_now = late_now.read(5, timeout=20)
    assert sorted(r.value["request_id"] for r in from_now) == sorted(later)
    from_time = Subscriber(kafka, registry, catalog.requests("m"), "InferenceRequest", start=middle)
    assert sorted(r.value["request_id"] for r in from_time.read(5, timeout=20)) == sorted(later)
    assert from_time.poll_batch(100, 1.0) == []


def test_predict_times_out_with_a_clear_error(kafka, registry, make_topics):
    make_topics("m")
    with Predictor(kafka, registry, "m") as predictor:
        started = time.monotonic()
        with pytest.raises(PredictTimeout, match="no prediction for request .* from model 'm' within 1.5s"):
            predictor.predict({"x": 1.0}, timeout=1.5)
        assert time.monotonic() - started < 10


def test_publisher_checks_the_feature_spec(kafka, registry, make_topics):
    make_topics("m")
    spec = FeatureSpec((Feature("age"), Feature("plan", "categorical", categories=("free", "pro"))))
    publisher = Publisher(kafka, registry, "m", feature_spec=spec)
    with pytest.raises(FeatureProblem, match="feature 'age': required and missing") as info:
        publisher.publish({"plan": "free"})
    assert info.value.reason == "missing_feature"
    with pytest.raises(FeatureProblem, match="'plan'") as info:
        publisher.publish({"age": 3, "plan": "enterprise"})
    assert info.value.reason == "unseen_category"
    with pytest.raises(FeatureProblem, match="'age'") as info:
        publisher.publish({"age": float("nan"), "plan": "pro"})
    assert info.value.reason == "non_finite"
    with pytest.raises(FeatureProblem, match="'age'"):
        publisher.publish({"age": "old", "plan": "pro"})
    assert publisher.publish({"age": 3, "plan": "pro"})
    # Delivered, and not left queued: an undelivered record's callback keeps its client alive past
    # the session broker, logging librdkafka's `Connection refused` after pytest's summary.
    assert publisher.flush(10) == 1          # delivered (flush raises for any that was not)


def test_labels_are_keyed_by_request_id(kafka, registry, make_topics):
    catalog = make_topics()
    labels = LabelPublisher(kafka, registry, source="test")
    labels.label("req-1", label="spam", model="m")
    labels.label("req-2", value=3.5)
    with pytest.raises(ValueError, match="exactly one of label or value"):
        labels.label("req-3")
    labels.flush()
    with Subscriber(kafka, registry, catalog.labels, "GroundTruth", start="earliest") as sub:
        got = {r.key: r.value for r in sub.read(2, timeout=20)}
    assert got[b"req-1"]["label"] == "spam" and got[b"req-1"]["source"] == "test"
    assert got[b"req-2"]["value"] == 3.5 and got[b"req-2"]["label"] is None


def test_predict_raises_the_dead_letter_reason_of_its_request(kafka, registry, make_topics):
    from flywheel.processors.runtime.deadletter import DeadLetterWriter
    from flywheel.schemas import AvroSerde
    from flywheel.streams.clients import make_producer
    from flywheel.streams.errors import RequestRejected
    catalog = make_topics("m")
    letters = DeadLetterWriter(AvroSerde(registry, "DeadLetter"), catalog.deadletter, "worker")
    requests = Publisher(kafka, registry, "m")
    producer = make_producer(kafka)

    def dead_letter(payload: bytes, topic: str) -> None:
        letters.send(producer, letters.record("missing_feature", "feature 'x1': required and missing", topic=topic,
                                              partition=0, offset=0, key=b"k", value=payload))
    with Predictor(kafka, registry, "m") as predictor:
        mine = requests._serde.encode(requests.to_record(Request({"x0": 1.0}, request_id="mine")))
        dead_letter(b"not a request at all", catalog.requests("m"))       # ignored: no request id in it
        dead_letter(mine, catalog.labels)                                  # ignored: not from this model's requests
        dead_letter(mine, catalog.requests("m"))
        producer.flush()
        with pytest.raises(RequestRejected, match=r"missing_feature: feature 'x1': required and missing "
                                                  r"\(request mine to model 'm'\)") as info:
            predictor.predict(Request({"x0": 1.0}, request_id="mine"), timeout=30)
        assert info.value.reason == "missing_feature"   # not PredictTimeout: the rejection ends the wait
