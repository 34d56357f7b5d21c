"""Metadata look-ups that survive leader elections (Apache Kafka answers NOT_LEADER_FOR_PARTITION
for a moment after CreateTopics; Tansu never does, so the retry rules are also tested directly)."""
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from flywheel.streams.clients import make_admin, make_consumer
from flywheel.streams.errors import BrokerUnavailable
from flywheel.streams.metadata import retrying, wait_for_leaders, watermarks
from flywheel.streams.topics import TopicSpec, ensure_topics


def _failing(codes: list[int], then):
    calls = []

    def call():
        calls.append(time.monotonic())
        if len(calls) <= len(codes):
            raise KafkaException(KafkaError(codes[len(calls) - 1]))
        return then
    return call, calls


@pytest.mark.parametrize("code", [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART,
                                  KafkaError.LEADER_NOT_AVAILABLE])
def test_leader_races_are_retried_until_they_pass(code):
    call, calls = _failing([code, code, code], then=(0, 42))
    assert retrying(call, "read watermarks", timeout=10) == (0, 42)
    assert len(calls) == 4
    assert calls[-1] - calls[0] >= 0.05 + 0.1 + 0.2 - 0.01  # backoff doubles between attempts


def test_other_errors_are_not_retried():
    call, calls = _failing([KafkaError.TOPIC_AUTHORIZATION_FAILED], then=None)
    with pytest.raises(BrokerUnavailable, match="cannot read watermarks: .*"):
        retrying(call, "read watermarks", timeout=10)
    assert len(calls) == 1


def test_a_race_that_never_ends_fails_within_its_bound_naming_what():
    call, calls = _failing([KafkaError.NOT_LEADER_FOR_PARTITION] * 100, then=None)
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="cannot read watermarks of x\\[0\\]"):
        retrying(call, "read watermarks of x[0]", timeout=1.0)
    assert time.monotonic() - start < 2.0
    assert 3 <= len(calls) < 100


def test_ensure_topics_returns_usable_topics(kafka):
    admin = make_admin(kafka)
    names = [f"{kafka.topic_prefix}ready.{i}" for i in range(3)]
    created = ensure_topics(admin, [TopicSpec(n, 3, 1) for n in names])
    assert sorted(created) == names
    consumer = make_consumer(kafka, "unused")
    try:  # every partition answers at once: it has a leader
        assert [watermarks(consumer, TopicPartition(n, p), timeout=2)[1] for n in names for p in range(3)] == [0] * 9
    finally:
        consumer.close()
    assert ensure_topics(admin, [TopicSpec(n, 3, 1) for n in names]) == []


def test_waiting_for_a_topic_that_never_comes_names_it(kafka):
    missing = f"{kafka.topic_prefix}never.created"
    with pytest.raises(BrokerUnavailable, match=f"topics not ready after 1s: {missing}"):
        wait_for_leaders(make_admin(kafka), [missing], timeout=1.0)
