"""The trigger's running tally of a live version's labelled feedback: the store is read once per
live version however many rounds follow, a label that comes hours after its prediction counts when
it comes, buckets past the lookback are dropped, and the figures are those of the records."""
import numpy as np
import pytest
from flywheel.feature_store import FeedbackRecord
from flywheel.processors.monitor.performance import performance
from flywheel.processors.trigger.settings import TriggerSettings
from flywheel.processors.trigger.tally import BUCKETS, LiveTallies

HOUR = 3_600_000
NOW = 1000 * 86_400_000


def _record(i: int, event_time: int, labelled_at: int, wrong: bool = False, version: str = "1",
            model: str = "m") -> FeedbackRecord:
    return FeedbackRecord(f"r{i}", "e", model, version, event_time, event_time, labelled_at, {}, {}, "a", None,
                          {"a": 0.7}, 0.7 if wrong else 0.95, "b" if wrong else "a")


class Store:
    """The stored feedback, counting what the tallies read of it."""

    def __init__(self, records: list[FeedbackRecord]):
        self.records, self.reads, self.rows = records, 0, 0

    def __call__(self, model: str, version: str, start: int, end: int) -> list[FeedbackRecord]:
        found = [r for r in self.records
                 if (r.model, r.model_version) == (model, version) and start <= r.event_time < end]
        self.reads, self.rows = self.reads + 1, self.rows + len(found)
        return found


def _stored(n: int, rng) -> list[FeedbackRecord]:
    return [_record(i, NOW - 2 * HOUR + i * 1000, NOW - 2 * HOUR + i * 1000 + 5000, bool(rng.random() < 0.1))
            for i in range(n)]


def test_rounds_read_the_store_once_and_count_what_the_topic_brings():
    rng = np.random.default_rng(0)
    store = Store(_stored(1000, rng))
    tallies = LiveTallies(TriggerSettings(), store)
    arrived = []
    for k in range(50):                                  # a round every 10 s, ten labels each
        now = NOW + k * 10_000
        new = [_record(10_000 + 10 * k + j, now - 3 * HOUR, now + j, bool(rng.random() < 0.3))
               for j in range(10)]                       # predictions 3 h old, labelled now
        tally = tallies.of("m", "1", now)
        tallies.add(new)
        arrived += new
    assert (store.reads, store.rows) == (1, 1000)        # the build, and nothing after
    whole = tally.since(0)
    assert whole.labels == 1500 and tally.since(NOW).labels == 500    # late labels count when they come
    expected = performance([vars(r) for r in store.records + arrived])
    assert whole.counts.performance().metrics == pytest.approx(expected.metrics)
    assert whole.hard_examples == sum(r.true_label != r.predicted_label for r in store.records + arrived)


def test_buckets_past_the_lookback_are_dropped_so_memory_is_bounded_by_the_lookback():
    settings = TriggerSettings(lookback_seconds=3600)
    tallies = LiveTallies(settings, Store([]))
    for k in range(3 * 360):                              # three hours, a label every 10 s
        now = NOW + k * 10_000
        tally = tallies.of("m", "1", now)
        tallies.add([_record(k, now - HOUR, now)])
    assert len(tally.buckets) <= BUCKETS + 1 and tally.bucket_ms == 2_500
    # The last hour's 360 labels, and at most a bucket's more (the lookback starts at a bucket's start).
    assert 360 <= tally.since(0).labels <= 361


def test_a_lookback_of_seconds_counts_seconds_not_whole_minutes():
    tallies = LiveTallies(TriggerSettings(lookback_seconds=20), Store([]))
    tally = tallies.of("m", "1", NOW)
    tallies.add([_record(k, NOW + k * 1000, NOW + k * 1000) for k in range(120)])      # a label a second
    tally = tallies.of("m", "1", NOW + 120_000)
    assert tally.bucket_ms == 1_000 and 20 <= tally.since(0).labels <= 21       # not the 20-80 of minute buckets


def test_a_new_live_version_is_built_from_the_store_and_only_followed_feedback_counts():
    store = Store([_record(i, NOW - HOUR, NOW - HOUR + 1000, version="2") for i in range(5)])
    tallies = LiveTallies(TriggerSettings(), store)
    assert tallies.of("m", "1", NOW).since(0).labels == 0
    tallies.add([_record(100, NOW, NOW, version="2"), _record(101, NOW, NOW, model="other"),
                 _record(102, NOW, NOW, version="1")])
    assert tallies.of("m", "1", NOW).since(0).labels == 1
    assert tallies.of("m", "2", NOW).since(0).labels == 5          # promoted: read from the store
    assert store.reads == 2 and list(tallies.models) == ["m"]
