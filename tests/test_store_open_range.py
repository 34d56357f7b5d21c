"""Open-ended time ranges are bounded by the data: `feedback(m, 0, 2**62)` and
`metrics(m, v, 0, 2**62)` read the partitions that hold rows, not every hourly (daily) bucket
since 1970 (which took 12 minutes and more)."""
import pytest
from flywheel.feature_store import FeedbackRecord, WindowMetrics

from tests.store_harness import T0, drop, make_backend

HOUR = 3_600_000
OPEN_END = 2 ** 62


@pytest.fixture(params=["sqlite", "cassandra"])
def store(request, tmp_path):
    backend = make_backend(request.param, tmp_path)
    s = backend.open()
    s.migrate()
    yield s
    drop(backend, s)
    s.close()


def _count_range_reads(store) -> list:
    """Every partition read the store makes from now on (the real method still answers)."""
    calls = []
    real = store._select_range

    def counted(table, partition, start, end):
        calls.append(partition)
        if len(calls) > 1000:
            raise AssertionError(f"walked more than 1000 partitions for {table}")
        return real(table, partition, start, end)
    store._select_range = counted
    return calls


def test_open_ended_ranges_read_only_the_buckets_with_data(store):
    times = [T0, T0 + 5 * HOUR, T0 + 30 * HOUR]
    store.put_feedback([FeedbackRecord(f"r{i}", "e", "m", "v1", t, t + 1, t + 2, true_label="a")
                        for i, t in enumerate(times)])
    store.put_metrics([WindowMetrics("m", "v1", t, t + 60_000, {"accuracy": 0.5}) for t in times])
    calls = _count_range_reads(store)
    assert [r.event_time for r in store.feedback("m", 0, OPEN_END)] == times
    assert len(calls) <= 31 * store.settings.feedback_shards  # T0's hour to T0 + 30 h, not 1970 to 2**62
    calls.clear()
    assert [w.window_start for w in store.metrics("m", "v1", 0, OPEN_END)] == times
    assert len(calls) <= 3
    calls.clear()
    assert list(store.feedback("m", 0, OPEN_END, version="nothing")) == []
    assert list(store.metrics("m", "nothing", T0 + HOUR, OPEN_END)) == []
    assert calls == []
    assert [r.event_time for r in store.feedback("m", T0 + HOUR, T0 + 6 * HOUR)] == [T0 + 5 * HOUR]  # short: walked
