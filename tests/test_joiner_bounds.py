"""The joiner's held labels stay within `max_held_labels` under a burst of labels for requests that
were never predicted: the oldest are given up as `hold_bound` dead letters with their original
bytes, the committed offset moves on, and good labels in the same burst still join."""
from confluent_kafka import TopicPartition
from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.joiner.process import FeedbackJoiner
from flywheel.processors.joiner.settings import JoinerSettings

from tests.test_joiner_process import T0, Topics, _label, _prediction, _run_until
from tests.test_worker_support import register

UNKNOWN, GOOD, BOUND = 3000, 60, 300


def test_a_burst_of_unknown_labels_is_held_within_the_bound_and_good_labels_still_join(
        kafka, registry, data_dir, make_topics):
    topics = Topics(kafka, registry, make_topics("m"))
    register(kafka, registry, data_dir, "m", "1").close()
    store = open_store(StoreSettings(), data_dir)
    settings = JoinerSettings(join_window_seconds=3600, early_label_wait_seconds=600, max_held_labels=BOUND,
                              group_id="jb")
    joiner = FeedbackJoiner(kafka, registry, store, settings, instance="t")
    topics.predictions([_prediction(i) for i in range(GOOD)])
    # Stored first: a label that comes before its prediction is held, and under a flood may be
    # given up before the prediction comes (docs/operating/bounds.md).
    _run_until(joiner, lambda: len(store.get_predictions([f"r{i}" for i in range(GOOD)])) == GOOD)
    burst = [_label(10_000 + i) for i in range(UNKNOWN)]
    for i in range(GOOD):                                   # good labels spread through the burst
        burst.insert(i * UNKNOWN // GOOD, _label(i))
    topics.labels(burst)

    m = joiner.metrics.registry
    dead_letters = lambda: m.get_sample_value(  # noqa: E731
        "flywheel_dead_letters_total", {"processor": "joiner", "reason": "hold_bound"}) or 0
    stored = lambda: list(store.feedback("m", T0 - 3_600_000, T0 + 3_600_000))  # noqa: E731
    most = 0

    def done() -> bool:
        nonlocal most
        most = max(most, len(joiner.holds))
        unknown_held = sum(1 for rid in joiner.holds._by_id if int(rid[1:]) >= 10_000)
        return dead_letters() + unknown_held == UNKNOWN and len(stored()) == GOOD
    _run_until(joiner, done, timeout=60)

    # Room is made for every label of a batch before the join, so good ones leave a little spare.
    assert most <= BOUND and BOUND - GOOD <= len(joiner.holds)
    assert m.get_sample_value("flywheel_held_labels") == len(joiner.holds)
    assert m.get_sample_value("flywheel_held_labels_given_up_total") >= dead_letters()
    assert sorted(int(r.request_id[1:]) for r in stored()) == list(range(GOOD))

    dead = topics.read(topics.catalog.deadletter, "DeadLetter", dead_letters())
    assert len(dead) == dead_letters() and {d["reason"] for d, _ in dead} == {"hold_bound"}
    assert "max_held_labels 300" in dead[0][0]["detail"]
    payloads = [topics.serde["GroundTruth"].decode(d["payload"]) for d, _ in dead]
    held = {rid for rid in joiner.holds._by_id if int(rid[1:]) >= 10_000}
    assert {p["request_id"] for p in payloads} | held == {f"r{10_000 + i}" for i in range(UNKNOWN)}
    # The oldest are given up: in each partition, every dead letter came before every label held.
    oldest_held = joiner.holds.oldest_offsets()
    for d, _ in dead:
        key = (d["source_topic"], d["source_partition"])
        assert d["source_offset"] < oldest_held.get(key, d["source_offset"] + 1)

    # The committed offset moved past every given-up label, up to the oldest one still held.
    labels = [TopicPartition(topics.catalog.labels, p) for p in range(kafka.partitions)]
    committed = {(tp.topic, tp.partition): tp.offset for tp in joiner.consumer.committed(labels, timeout=10)}
    for d, _ in dead:
        assert committed[(d["source_topic"], d["source_partition"])] > d["source_offset"]
    for key, offset in oldest_held.items():
        assert committed[key] == offset
    joiner.close()
    store.close()
