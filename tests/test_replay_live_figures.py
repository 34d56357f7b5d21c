"""Replayed traffic does not move the live figures: with the real worker, joiner and monitor
running, a replay of a model's requests and labels (into the same window, while it is open) is
served and joined again, yet the joiner's live counter and the monitor's window figures (volume,
labelled count, accuracy) are exactly those of the live traffic.

The replay re-uses the live request ids, so the store's and the monitor's per-request keys protect
these figures as well as the replay header does (a control run with the header renamed passes
too); the header is what keeps replays with new answers, e.g. a different version's, out."""
import threading
import time

import pytest
from confluent_kafka import TopicPartition
from flywheel.feature_store import PredictionRecord, StoreSettings, open_store
from flywheel.processors.joiner.join import Join, Label
from flywheel.processors.joiner.process import FeedbackJoiner
from flywheel.processors.joiner.settings import JoinerSettings
from flywheel.processors.monitor.process import Monitor
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.streams.clients import make_consumer
from flywheel.streams.labels import LabelPublisher
from flywheel.streams.publisher import Publisher, Request
from flywheel.streams.replay import Checkpoints, TimeRange
from flywheel.streams.replay.ranges import log_ends
from flywheel.streams.replay.topic import topic_replay
from flywheel.streams.topics import topic_partitions

from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for

LIVE = 40
HOUR_MS = 3_600_000


class Running:
    """A processor's run() loop in a thread."""

    def __init__(self, processor):
        self.processor = processor
        self.thread = threading.Thread(target=processor.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.processor

    def __exit__(self, *exc):
        self.processor.stop.set()
        self.thread.join(30)


def caught_up(kafka, consumer, topics: list[str]) -> bool:
    """Whether a processor's consumer has read every record of these topics as they are now. Only
    the local position() is asked of the processor's consumer, which another thread is polling."""
    reader = make_consumer(kafka, "caught-up-probe")
    try:
        for topic in topics:
            partitions = topic_partitions(reader, topic)
            ends = log_ends(reader, topic, partitions)
            positions = {tp.partition: tp.offset for tp in
                         consumer.position([TopicPartition(topic, p) for p in partitions])}
            if any(ends[p] > 0 and positions[p] < ends[p] for p in partitions):
                return False
        return True
    finally:
        reader.close()


def test_replayed_traffic_does_not_move_live_figures(kafka, registry, data_dir, make_topics):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    _, _, data = small_model()
    now = [int(time.time() * 1000)]
    joiner = FeedbackJoiner(kafka, registry, open_store(StoreSettings(), data_dir),
                            JoinerSettings(group_id="joiner", poll_timeout_seconds=0.1), instance="t")
    monitor = Monitor(kafka, registry, open_store(StoreSettings(), data_dir),
                      MonitorSettings(window_seconds=3600, allowed_lateness_seconds=1, idle_seconds=1,
                                      group_id="monitor", poll_timeout_seconds=0.1, min_count=1), clock=lambda: now[0])
    joined = joiner.metrics.joined.labels("m", "v1")
    started = int(time.time() * 1000)

    def pump(predicate, timeout: float = 30.0):
        """Drive the monitor from this thread (its consumer is asked for positions here too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            monitor.step()
            if predicate():
                return
        raise AssertionError(f"monitor condition not met within {timeout}s")

    with RunningWorker(kafka, registry, data_dir), Running(joiner):
        publisher = Publisher(kafka, registry, "m")
        ids = publisher.publish_many(Request(row, entity_id=f"e{i}") for i, row in enumerate(data.rows(0, LIVE)))
        publisher.flush()
        read_topic(kafka, registry, catalog.predictions("m"), "Prediction", LIVE)
        labels = LabelPublisher(kafka, registry)
        for request_id, truth in zip(ids, data.target[:LIVE]):
            labels.label(request_id, str(truth), model="m")
        labels.flush()
        wait_for(lambda: joined._value.get() == LIVE, timeout=30)
        # Replay the live hour's requests and labels into their own topics.
        checkpoints = Checkpoints.in_data_dir(data_dir)
        window = TimeRange(started - 1000, int(time.time() * 1000) + 1)
        for topic in (catalog.requests("m"), catalog.labels):
            report = topic_replay(kafka, checkpoints, f"again-{topic}", topic, topic, window).run()
            assert report.totals() == {"sent": LIVE}
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 2 * LIVE)
        assert len(predictions) == 2 * LIVE  # the replayed requests were served again
        read_topic(kafka, registry, catalog.feedback, "FeedbackRecord", 2 * LIVE, timeout=5)  # let the joiner catch up
        pump(lambda: caught_up(kafka, monitor.consumer, [catalog.feedback, catalog.predictions("m")]))
        now[0] += 4 * HOUR_MS  # close the window the live and the replayed traffic both fell in
        pump(lambda: monitor.closed)
        for _ in range(5):
            monitor.step()
        assert [(r.rows, r.labelled) for r in monitor.closed] == [(LIVE, LIVE)]
        served = {p["request_id"]: p["label"] for p, m in predictions if not m.headers()}
        accuracy = sum(served[i] == str(t) for i, t in zip(ids, data.target[:LIVE])) / LIVE
        assert monitor.closed[0].performance.metrics["accuracy"] == pytest.approx(accuracy)
        [stored] = monitor.store.metrics("m", "v1", 0, now[0])
        assert (stored.values["rows"], stored.values["labelled"]) == (LIVE, LIVE)
        assert joined._value.get() == LIVE
    monitor.close()


def test_a_replayed_request_leaves_the_live_feedback_row_alone(data_dir):
    """A replay re-uses the live request ids: the joiner must not let its rows replace live ones
    in the store (the retrainer and backtests read live examples from there)."""
    store = open_store(StoreSettings(), data_dir)
    join = Join(store, JoinerSettings())
    truth = {"request_id": "r1", "model": "m", "label": "no", "value": None, "labelled_at": 2_000, "source": "app"}
    prediction = dict(request_id="r1", entity_id="e1", model="m", model_version="v1", event_time=1_000, label="yes")
    join.add_predictions([PredictionRecord(predicted_at=1_005, **prediction)])
    join.add_labels([Label.from_ground_truth(truth)])
    join.add_predictions([PredictionRecord(predicted_at=9_005, replay=True, **prediction)])
    join.add_labels([Label.from_ground_truth(truth, replay=True)])
    rows = list(store.feedback("m", 0, 10_000))
    assert [(r.flags, r.predicted_at) for r in rows] == [([], 1_005)]
