"""Topic generations on the real embedded broker: records written across a rotation reach a
consumer group once each; an old generation is deleted only once every group has read it; a
replay refuses a logical topic kept as several generations rather than read only the first; lag
counts a partition read to its end before a rebalance as read."""
import dataclasses
import time

import pytest
from confluent_kafka import Producer, TopicPartition
from flywheel.processors.runtime.lag import LagTracker
from flywheel.streams import generations
from flywheel.streams.clients import make_admin, make_consumer, make_producer, producer_config
from flywheel.streams.generations import (
    REFRESH_SECONDS,
    RoutingConsumer,
    RoutingProducer,
    generation_name,
    retired_name,
    sealed_name,
)
from flywheel.streams.replay import Checkpoints, TimeRange
from flywheel.streams.replay.errors import SourceHasGenerations
from flywheel.streams.replay.topic import topic_replay
from flywheel.streams.rotation import Rotator
from flywheel.streams.settings import RotationSettings
from flywheel.streams.topics import TopicCatalog, ensure_topics
from prometheus_client import CollectorRegistry, Gauge


@pytest.fixture
def rotating(kafka):
    """Settings with generations on, the labels topic, and a rotator that turns at 10 records,
    keeps one standby generation and deletes a passed one at once."""
    kafka = dataclasses.replace(kafka, topic_generations=True, partitions=1)
    catalog = TopicCatalog(kafka)
    ensure_topics(make_admin(kafka), [catalog.generation_spec(catalog.labels, 1)])
    rotator = Rotator(make_admin(kafka), catalog, RotationSettings(
        generation_records=10, generation_seconds=3600, standby_generations=1, keep_seconds=0, check_seconds=0,
        retire_seconds=0))
    return kafka, catalog, rotator


def write(kafka, topic: str, values: range) -> None:
    """One batch per record: Tansu reports a partition's end as its last batch's base offset + 1."""
    producer = make_producer(kafka, **{"linger.ms": 0})
    for v in values:
        producer.produce(topic, str(v).encode())
        producer.flush(10)


def read(consumer, count: int, timeout: float = 30.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += [m for m in consumer.consume(100, 0.5) if m.error() is None]
    return got


def names(kafka, catalog) -> set[str]:
    return {t for t in make_admin(kafka).list_topics(timeout=10).topics if t.startswith(catalog.labels)}


def generation(catalog, number: int) -> str:
    return generation_name(catalog.labels, number)


def test_a_group_reads_across_rotations_and_old_generations_go_once_read(rotating):
    kafka, catalog, rotator = rotating
    consumer = make_consumer(kafka, f"{kafka.topic_prefix}reader")
    consumer.subscribe([catalog.labels])
    try:
        write(kafka, catalog.labels, range(10))
        rotator.rotate(time.monotonic())              # 10 records held: generation 0 sealed, 1 current, 2 standby
        assert {sealed_name(catalog.labels), generation(catalog, 1), generation(catalog, 2)} <= names(kafka, catalog)
        time.sleep(REFRESH_SECONDS + 0.5)             # a producer sees the seal
        write(kafka, catalog.labels, range(10, 20))
        got = read(consumer, 20)
        assert sorted(int(m.value()) for m in got) == list(range(20))
        assert {m.topic() for m in got} == {catalog.labels, generation(catalog, 1)}

        # A group that has committed part of a generation keeps it (one that has never committed
        # on the topic is not known to read it: Tansu describes groups without their members).
        consumer.commit(offsets=[TopicPartition(catalog.labels, 0, 5)], asynchronous=False)
        seen = []
        rotator.rotate(time.monotonic())              # generation 1 full: 2 current, 3 made standby
        assert generation(catalog, 3) in names(kafka, catalog)
        assert _held(kafka, catalog.labels) > 0 and retired_name(catalog.labels) not in names(kafka, catalog)
        write(kafka, catalog.labels, range(20, 30))
        # The new standby generation rebalanced the group: what it had not committed comes again.
        deadline = time.monotonic() + 30
        # Generation 0 again from offset 5 too (it was paused as read to its end; its next listing
        # resumes it) before the commit, or the group has not read it.
        again = set(range(20, 30)) | set(range(5, 10))
        while not again <= set(seen) and time.monotonic() < deadline:
            seen += [int(m.value()) for m in read(consumer, 1, 1.0)]
        assert again <= set(seen)
        consumer.commit(asynchronous=False)
        rotator.rotate(time.monotonic())              # read to their ends: retired first, with the new standby
        assert {retired_name(catalog.labels), retired_name(generation(catalog, 1)),
                generation(catalog, 4)} <= names(kafka, catalog)
        live = {generation(catalog, n) for n in (2, 3, 4)}
        deadline = time.monotonic() + 30
        while {tp.topic for tp in consumer.assignment()} != live and time.monotonic() < deadline:
            consumer.consume(10, 0.5)                 # the reader drops the retired generations
        assert {tp.topic for tp in consumer.assignment()} == live
        rotator.rotate(time.monotonic())              # then they are deleted (the first remade empty)
        assert _held(kafka, catalog.labels) == 0
        assert not {retired_name(catalog.labels), generation(catalog, 1)} & names(kafka, catalog)
    finally:
        consumer.close()


def test_a_turn_changes_no_subscription_and_producers_follow_the_seal(rotating):
    """With a standby generation already subscribed, sealing the current one moves producers on
    and leaves every reader's subscription as it was: no rebalance at a turn."""
    kafka, catalog, rotator = rotating
    rotator.settings.standby_generations = 2
    rotator.rotate(time.monotonic())                  # standby 1 and 2 made
    consumer = make_consumer(kafka, f"{kafka.topic_prefix}steady")
    consumer.subscribe([catalog.labels])
    try:
        write(kafka, catalog.labels, range(10))
        assert len(read(consumer, 10)) == 10
        subscribed = {tp.topic for tp in consumer.assignment()}
        assert subscribed == {catalog.labels, generation(catalog, 1), generation(catalog, 2)}
        rotator.rotate(time.monotonic())              # generation 0 full: sealed, 1 current, nothing made
        assert names(kafka, catalog) == subscribed | {sealed_name(catalog.labels)}
        time.sleep(REFRESH_SECONDS + 0.5)
        write(kafka, catalog.labels, range(10, 20))
        got = read(consumer, 10)
        assert {m.topic() for m in got} == {generation(catalog, 1)}
        assert {tp.topic for tp in consumer.assignment()} == subscribed
    finally:
        consumer.close()


def test_a_sealed_generation_read_to_its_end_is_paused_yet_gives_a_late_record(rotating, monkeypatch):
    """Paused once read to its end, SETTLE_SECONDS after the seal was seen: a record that reached
    it later anyway (from a producer that missed the seal: a plain one here) is not fetched until
    the partition is fetched again for a listing (RECHECK_SECONDS), then it is; a seek (a batch
    redone) resumes it at once. Pausing at the seal with no second look stranded such records
    until the next rebalance (a soak's worker sat 500 records behind for two minutes)."""
    monkeypatch.setattr(generations, "SETTLE_SECONDS", 1.0)
    monkeypatch.setattr(generations, "RECHECK_SECONDS", 6.0)
    kafka, catalog, rotator = rotating
    rotator.settings.standby_generations = 2
    rotator.rotate(time.monotonic())
    consumer = make_consumer(kafka, f"{kafka.topic_prefix}pauser")
    consumer.subscribe([catalog.labels])
    plain = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 0})
    try:
        write(kafka, catalog.labels, range(10))
        assert len(read(consumer, 10)) == 10
        rotator.rotate(time.monotonic())              # generation 0 sealed
        read(consumer, 1, 2 * REFRESH_SECONDS + 1.5)  # one listing sees the seal, the next pauses it
        plain.produce(catalog.labels, b"100")
        plain.flush(10)
        assert read(consumer, 1, REFRESH_SECONDS) == []
        assert [int(m.value()) for m in read(consumer, 1, 6.0 + 2 * REFRESH_SECONDS + 2)] == [100]
        plain.produce(catalog.labels, b"101")
        plain.flush(10)
        read(consumer, 1, REFRESH_SECONDS + 0.5)      # paused again (or 101 already read)
        consumer.seek(TopicPartition(catalog.labels, 0, 11))
        assert [int(m.value()) for m in read(consumer, 1)] == [101]
    finally:
        consumer.close()


def test_a_client_given_the_broker_s_address_finds_its_generations(rotating):
    """Generations not set (an explicit bootstrap, as a client in another folder has): found on
    the broker under the client's topic prefix, so its records go to the current generation."""
    kafka, catalog, rotator = rotating
    rotator.rotate(time.monotonic())                  # the standby generation made
    client = dataclasses.replace(kafka, topic_generations=False)
    assert isinstance(make_producer(client), RoutingProducer)
    assert isinstance(make_consumer(client, f"{kafka.topic_prefix}finder"), RoutingConsumer)
    elsewhere = dataclasses.replace(client, topic_prefix=f"{kafka.topic_prefix}other-")
    assert not isinstance(make_producer(elsewhere), RoutingProducer)


def test_a_replay_of_a_topic_kept_as_generations_names_them(rotating, data_dir):
    kafka, catalog, rotator = rotating
    write(kafka, catalog.labels, range(10))
    rotator.rotate(time.monotonic())
    window = TimeRange(0, int(time.time() * 1000))
    with pytest.raises(SourceHasGenerations, match=generation_name(catalog.labels, 1)):
        topic_replay(kafka, Checkpoints.in_data_dir(data_dir), "r1", catalog.labels, catalog.labels, window)


def _held(kafka, topic: str) -> int:
    consumer = make_consumer(kafka, f"{kafka.topic_prefix}probe")
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def test_lag_of_a_partition_read_to_its_end_before_a_rebalance_is_zero(rotating):
    """After a rebalance (new standby generations, retired old ones) a partition read and committed to
    its end has no position until a record arrives: its lag counts from the commit, not from
    the partition's first record."""
    kafka, catalog, _ = rotating
    group = f"{kafka.topic_prefix}lag"
    write(kafka, catalog.labels, range(10))
    first = make_consumer(kafka, group)
    first.subscribe([catalog.labels])
    assert len(read(first, 10)) == 10
    first.commit(asynchronous=False)
    first.close()
    successor = make_consumer(kafka, group)
    try:
        successor.subscribe([catalog.labels])
        deadline = time.monotonic() + 30
        while successor.get_watermark_offsets(TopicPartition(catalog.labels, 0), cached=True)[1] < 0 \
                and time.monotonic() < deadline:
            assert not successor.consume(10, 0.5)
        gauge = Gauge("lag", "lag", ["processor", "topic", "partition"], registry=CollectorRegistry())
        assert LagTracker(successor, gauge, "test").update(force=True) == {(catalog.labels, 0): 0}
    finally:
        successor.close()


def test_a_group_whose_commits_stopped_moving_long_ago_holds_nothing(rotating):
    """A reader gone for good must not make the broker grow again: past abandon_seconds without
    a commit moving, a group behind no longer keeps a generation."""
    kafka, catalog, rotator = rotating
    write(kafka, catalog.labels, range(10))
    consumer = make_consumer(kafka, f"{kafka.topic_prefix}gone")
    consumer.commit(offsets=[TopicPartition(catalog.labels, 0, 5)], asynchronous=False)   # then leaves
    consumer.close()
    rotator.settings.generation_seconds = 0           # a turn, and new standby, at every look
    rotator.rotate(time.monotonic())                  # generation 0 sealed
    rotator.rotate(time.monotonic())                  # the group is behind on generation 0: kept
    assert retired_name(catalog.labels) not in names(kafka, catalog)
    rotator.settings.abandon_seconds = 0
    rotator.rotate(time.monotonic())
    assert retired_name(catalog.labels) in names(kafka, catalog)


def test_an_empty_old_generation_goes_too(rotating):
    """A topic nothing writes to (a model's shadow topic without a shadow) turns over with the
    rest; its empty generations must not pile up."""
    kafka, catalog, rotator = rotating
    rotator.settings.generation_seconds = 0
    for _ in range(4):                                # turns to 1, 2, 3, 4; retires 1 (and 2), deletes 1
        rotator.rotate(time.monotonic())
    held = names(kafka, catalog)
    assert generation(catalog, 1) not in held and catalog.labels in held


def test_only_transactional_producers_are_idempotent_where_generations_are_in_use(kafka):
    """The embedded broker never prunes its record of idempotent producers' sequences per
    partition and rewrites it on every produce, and generations write new partitions at every
    turn: there only a transactional producer (which needs it) is idempotent, and a plain one
    keeps its order with one request in flight. On a cluster all are idempotent."""
    plain = producer_config(kafka, generations=True)
    assert plain["enable.idempotence"] is False and plain["max.in.flight.requests.per.connection"] == 1
    assert producer_config(kafka, generations=True, transactional_id="w")["enable.idempotence"] is True
    assert producer_config(kafka, generations=False)["enable.idempotence"] is True
