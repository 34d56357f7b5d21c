"""The store contract: every backend must pass these. The embedded backend always runs them;
Cassandra runs them when FLYWHEEL_CASSANDRA_HOSTS is set (and is skipped, saying so, otherwise)."""
import multiprocessing
import random
from dataclasses import replace

import pytest
from flywheel.feature_store import (
    CountedOffsets,
    FeedbackRecord,
    MonitorProgress,
    OnlineFeatures,
    PredictionRecord,
    ReferenceProfile,
    RetrainRecord,
    WindowMetrics,
    WindowPartial,
)
from flywheel.feature_store.settings import DAY_MS, HOUR_MS
from store_harness import T0, drop, make_backend, write_from_process


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def backend(request, tmp_path):
    return make_backend(request.param, tmp_path)


@pytest.fixture
def store(backend):
    s = backend.open()
    s.migrate()
    yield s
    drop(backend, s)
    s.close()


def feedback(request_id, event_time, version="v1", label="a", labelled_at=None, **kw):
    return FeedbackRecord(request_id, f"e-{request_id}", "m", version, event_time=event_time,
                          predicted_at=event_time + 5, labelled_at=labelled_at or event_time + 60_000,
                          true_label=label, predicted_label="a", scores={"a": 0.7, "b": 0.3},
                          numeric={"x": 1.5, "gone": None}, categorical={"c": "red", "n": None}, **kw)


# ---- online features
def test_online_batch_read_returns_present_ids_and_omits_missing(store):
    store.put_online("profile", [OnlineFeatures(f"u{i}", {"age": 30.0 + i, "city": "Oslo", "z": None}, T0)
                                 for i in range(3)])
    got = store.get_online("profile", ["u0", "nobody", "u2", "u0", "u1", "ghost"])
    assert sorted(got) == ["u0", "u1", "u2"]
    assert got["u2"].features == {"age": 32.0, "city": "Oslo", "z": None}
    assert store.get_online("other-group", ["u0"]) == {}
    assert store.get_online("profile", []) == {}


def test_online_writes_are_idempotent_and_replace_by_key(store):
    row = OnlineFeatures("u1", {"age": 30.0}, T0)
    store.put_online("profile", [row])
    store.put_online("profile", [row])
    assert store.get_online("profile", ["u1"]) == {"u1": row}
    newer = OnlineFeatures("u1", {"age": 31.0, "tier": "gold"}, T0 + 1)
    store.put_online("profile", [newer])
    assert store.get_online("profile", ["u1"]) == {"u1": newer}


def test_online_rows_expire_after_their_ttl(store, backend):
    store.put_online("g", [OnlineFeatures("short", {"x": 1.0}, T0)], ttl_s=2)
    store.put_online("g", [OnlineFeatures("long", {"x": 2.0}, T0)], ttl_s=3600)
    store.put_online("g", [OnlineFeatures("forever", {"x": 3.0}, T0)])
    assert sorted(store.get_online("g", ["short", "long", "forever"])) == ["forever", "long", "short"]
    backend.advance(3.5)
    assert sorted(store.get_online("g", ["short", "long", "forever"])) == ["forever", "long"]


# ---- predictions
def test_predictions_keep_every_version_per_request_and_round_trip(store):
    live = PredictionRecord("r1", "e1", "m", "v1", event_time=T0, predicted_at=T0 + 3, role="LIVE",
                            label="a", scores={"a": 0.9, "b": 0.1}, confidence=0.9, flags=["low_margin"],
                            numeric={"x": 1.0, "y": None}, categorical={"c": "red", "d": None},
                            feature_sources={"x": "request", "c": "online:profile"}, replay=True)
    shadow = PredictionRecord("r1", "e1", "m", "v2", event_time=T0, predicted_at=T0 + 4, role="SHADOW", value=2.5)
    store.put_predictions([live, shadow])
    store.put_predictions([live])
    got = store.get_predictions(["r1", "missing"])
    assert list(got) == ["r1"]
    assert sorted(got["r1"], key=lambda p: p.model_version) == [live, shadow]


def test_predictions_expire_when_written_with_a_ttl(store, backend):
    store.put_predictions([PredictionRecord("r1", "e1", "m", "v1", T0, T0)], ttl_s=2)
    store.put_predictions([PredictionRecord("r2", "e2", "m", "v1", T0, T0)])
    backend.advance(3.5)
    assert list(store.get_predictions(["r1", "r2"])) == ["r2"]


# ---- feedback
def test_feedback_write_is_idempotent_and_a_new_label_counts(store):
    first = feedback("r1", T0, label="a")
    assert [r.label_count for r in store.put_feedback([first])] == [1]
    assert [r.label_count for r in store.put_feedback([first])] == [1]          # redelivery
    relabel = feedback("r1", T0, label="b", labelled_at=T0 + 120_000)
    assert [r.label_count for r in store.put_feedback([relabel])] == [2]
    assert [r.label_count for r in store.put_feedback([relabel])] == [2]        # redelivery of the relabel
    (stored,) = store.feedback("m", T0, T0 + 1)
    assert stored == FeedbackRecord.from_dict({**relabel.to_dict(), "label_count": 2})


def test_feedback_range_reads_are_ordered_across_bucket_boundaries(store):
    start = (T0 // HOUR_MS) * HOUR_MS
    times = [start - 1, start, start + 1, start + HOUR_MS - 1, start + HOUR_MS, start + 2 * HOUR_MS + 7,
             start + 5 * HOUR_MS, start + 5 * HOUR_MS]          # two at the same time: request id breaks the tie
    records = [feedback(f"r{i}", t, version="v1" if i % 2 else "v2") for i, t in enumerate(times)]
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    store.put_feedback(shuffled)
    key = lambda r: (r.event_time, r.request_id, r.model_version)  # noqa: E731
    everything = list(store.feedback("m", start - HOUR_MS, start + 6 * HOUR_MS))
    assert [r.request_id for r in everything] == [r.request_id for r in sorted(records, key=key)]
    window = list(store.feedback("m", start, start + 5 * HOUR_MS))           # end is exclusive
    assert [r.event_time for r in window] == times[1:6]
    v1 = list(store.feedback("m", start - HOUR_MS, start + 6 * HOUR_MS, version="v1"))
    assert [r.request_id for r in v1] == [r.request_id for r in sorted(records, key=key) if r.model_version == "v1"]
    assert sorted(store.feedback_versions("m")) == ["v1", "v2"]
    assert list(store.feedback("other", start, start + HOUR_MS)) == []


def test_feedback_range_read_pages_through_a_large_partition(store):
    records = [feedback(f"r{i:05d}", T0 + (i // 3)) for i in range(2_600)]    # > 2 pages, ties included
    for i in range(0, len(records), 500):
        store.put_feedback(records[i:i + 500])
    got = [(r.event_time, r.request_id) for r in store.feedback("m", T0, T0 + HOUR_MS, version="v1")]
    assert got == sorted((r.event_time, r.request_id) for r in records)


def test_feedback_is_read_back_by_key_many_at_once(store):
    records = [feedback(f"r{i}", T0 + i * HOUR_MS // 7, version=f"v{i % 2}") for i in range(20)]
    store.put_feedback(records)
    keys = [(r.request_id, r.model, r.model_version, r.event_time) for r in records]
    got = store.get_feedback(keys + [("r1", "m", "v1", T0 + 5), ("nobody", "m", "v1", T0)])
    assert got == {r.key: r for r in records}


def test_feedback_that_moves_in_time_leaves_no_stale_row(store):
    store.put_feedback([feedback("r1", T0)])
    store.put_feedback([feedback("r1", T0 + 2 * HOUR_MS, label="b")])
    assert [(r.event_time, r.label_count) for r in store.feedback("m", T0 - HOUR_MS, T0 + 3 * HOUR_MS)] == \
        [(T0 + 2 * HOUR_MS, 2)]


def test_a_relabel_that_switches_from_class_to_value_clears_the_class(store):
    store.put_feedback([feedback("r1", T0, label="a")])
    (stored,) = store.put_feedback([feedback("r1", T0, label=None, true_value=2.5, labelled_at=T0 + 120_000)])
    assert stored.label_count == 2
    (read,) = store.feedback("m", T0, T0 + 1)
    assert (read.true_label, read.true_value, read.label_count) == (None, 2.5, 2)


def test_a_bucket_of_feedback_is_spread_over_its_shards_and_read_back_in_order(backend):
    store = backend.open(feedback_shards=3)
    store.migrate()
    try:
        records = [feedback(f"r{i}", T0 + i) for i in range(60)]
        store.put_feedback(records)
        bucket = store.feedback_bucket(T0)
        per_shard = [len(list(store._select_range("feedback_by_time_shard", ("m", "v1", bucket, shard), T0, T0 + 60)))
                     for shard in range(3)]
        assert sum(per_shard) == 60 and all(n > 0 for n in per_shard)
        assert [r.request_id for r in store.feedback("m", T0, T0 + 60)] == [f"r{i}" for i in range(60)]
    finally:
        drop(backend, store)
        store.close()


def test_feedback_metrics_and_monitor_partials_expire_after_their_retention(backend):
    store = backend.open(feedback_retention_days=2 / 86_400, metrics_retention_days=2 / 86_400,
                         monitor_partials_retention_days=2 / 86_400)
    store.migrate()
    try:
        store.put_feedback([feedback("r1", T0)])
        store.put_metrics([WindowMetrics("m", "v1", T0, T0 + 60_000, {"accuracy": 1.0})])
        store.put_partials([WindowPartial("g", "m", "v1", T0, T0 + 60_000, "i1", row_count=1)])
        store.put_progress([MonitorProgress("g", "i1", {"f:0": T0}, T0)])
        assert len(list(store.feedback("m", T0, T0 + 1))) == 1
        backend.advance(3.5)
        assert list(store.feedback("m", T0, T0 + 1)) == []
        assert list(store.metrics("m", "v1", T0, T0 + 1)) == []
        assert list(store.partials("g", T0, T0 + 1)) == [] and store.progress("g") == []
        assert store.put_feedback([feedback("r1", T0)])[0].label_count == 1     # its label count expired too
    finally:
        drop(backend, store)
        store.close()


# ---- batches: the writes of several calls go to the store together
def test_a_batch_writes_nothing_until_it_ends(store):
    prediction = PredictionRecord("r1", "e1", "m", "v1", event_time=T0, predicted_at=T0, label="a")
    with store.batch():
        store.put_predictions([prediction])
        store.put_online("g", [OnlineFeatures("u2", {"age": 30.0}, T0)])
        store.put_feedback([feedback("r3", T0)])
        assert store.get_predictions(["r1"]) == {} and store.get_online("g", ["u2"]) == {}
        assert list(store.feedback("m", T0, T0 + 1)) == []
    assert store.get_predictions(["r1"]) == {"r1": [prediction]}
    assert list(store.get_online("g", ["u2"])) == ["u2"]
    assert [r.request_id for r in store.feedback("m", T0, T0 + 1)] == ["r3"]


def test_a_batch_that_raises_writes_nothing(store):
    with pytest.raises(ZeroDivisionError):
        with store.batch():
            store.put_online("g", [OnlineFeatures("u1", {"age": 30.0}, T0)])
            store.put_feedback([feedback("r2", T0)])
            raise ZeroDivisionError("a failure inside the batch")
    assert store.get_online("g", ["u1"]) == {} and list(store.feedback("m", T0, T0 + 1)) == []
    store.put_online("g", [OnlineFeatures("u3", {"age": 30.0}, T0)])       # the store is usable after
    assert list(store.get_online("g", ["u3"])) == ["u3"]


def test_a_batch_of_many_records_round_trips(store):
    predictions = [PredictionRecord(f"r{i}", f"e{i}", "m", "v1", event_time=T0 + i, predicted_at=T0 + i,
                                    label="a", numeric={"x": float(i), "y": None}) for i in range(1_500)]
    with store.batch():
        store.put_predictions(predictions, ttl_s=3600)
        store.put_feedback([feedback(f"r{i}", T0 + i) for i in range(1_500)])
    got = store.get_predictions([f"r{i}" for i in range(1_500)])
    assert [got[f"r{i}"] for i in range(1_500)] == [[p] for p in predictions]
    assert len(list(store.feedback("m", T0, T0 + 1_500))) == 1_500
    store.put_feedback([feedback(f"r{i}", T0 + 2_000 + i) for i in range(1_500)])   # 1,500 rows move: deletes
    assert [f.event_time for f in store.feedback("m", T0, T0 + 4_000)] == [T0 + 2_000 + i for i in range(1_500)]


# ---- window metrics, profiles, retrain bookkeeping
def test_window_metrics_are_ordered_across_day_buckets_and_idempotent(store):
    day = (T0 // DAY_MS) * DAY_MS
    starts = [day + DAY_MS - 60_000, day - 60_000, day + DAY_MS, day]
    rows = [WindowMetrics("m", "v1", s, s + 60_000, {"accuracy": 0.9, "psi.x": 0.01}, {"n": 10, "top": ["a"]})
            for s in starts]
    store.put_metrics(rows)
    store.put_metrics(rows[:1])
    got = list(store.metrics("m", "v1", day - DAY_MS, day + 2 * DAY_MS))
    assert [w.window_start for w in got] == sorted(starts)
    assert got[0] == rows[1]
    assert [w.window_start for w in store.metrics("m", "v1", day, day + DAY_MS)] == [day, day + DAY_MS - 60_000]
    assert list(store.metrics("m", "v2", day - DAY_MS, day + 2 * DAY_MS)) == []


def test_large_rows_are_written_whole_in_batches_the_node_does_not_warn_about(store, caplog):
    """Window rows carry kilobytes of detail: a batch of rows_per_batch of them (rows of several
    partitions on one node go together) would pass the node's 5 KB batch warning, logged by the
    driver on every write; batches stop at batch_bytes."""
    day = (T0 // DAY_MS) * DAY_MS
    rows = [WindowMetrics("m", f"v{v}", day + i * 60_000, day + (i + 1) * 60_000, {"rows": float(i)},
                          {"drift": [{"feature": f"x{j}", "psi": 0.01 * j} for j in range(40)]})
            for v in range(10) for i in range(3)]
    with caplog.at_level("WARNING"):
        store.put_metrics(rows)
    assert [w for v in range(10) for w in store.metrics("m", f"v{v}", day, day + DAY_MS)] == rows
    assert not [r for r in caplog.records if "Batch for" in r.getMessage()]


def test_many_small_cells_do_not_pass_the_node_batch_warning_either(store, caplog):
    """The node counts a batch as its cells, each value with its timestamp and TTL: feedback rows
    of many features (the demo's) passed its warning when only the values were counted."""
    records = [replace(feedback(f"r{i}", T0 + i), numeric={f"x{j}": j + 0.5 for j in range(25)}) for i in range(60)]
    with caplog.at_level("WARNING"):
        store.put_feedback(records)
    assert len(list(store.feedback("m", T0, T0 + 60))) == 60
    assert not [r for r in caplog.records if "Batch for" in r.getMessage()]


def test_closed_windows_per_model_version(store):
    assert store.closed_until("m", "v1") is None
    store.put_closed_until("m", "v1", T0)
    store.put_closed_until("m", "v1", T0 + HOUR_MS)          # an upsert: the later end wins
    store.put_closed_until("m", "v2", T0)
    assert (store.closed_until("m", "v1"), store.closed_until("m", "v2")) == (T0 + HOUR_MS, T0)


def test_a_carry_is_kept_with_the_closed_until_it_was_written_with(store):
    assert store.carried("m", "v1") is None
    store.put_closed_until("m", "v1", T0, b"profile-1")
    assert store.carried("m", "v1") == b"profile-1"
    store.put_closed_until("m", "v1", T0 + HOUR_MS)          # judged: nothing carried any more (a null written)
    assert (store.closed_until("m", "v1"), store.carried("m", "v1")) == (T0 + HOUR_MS, None)
    store.put_closed_until("m", "v1", T0 + 2 * HOUR_MS, b"profile-3")
    # A closed_until written without its carry (a crash between two writes on Cassandra) makes
    # the carry stale: it is not used, so no window is counted twice or missed.
    store._upsert("monitor_closed_windows", [{"model": "m", "model_version": "v1", "closed_until": T0 + 3 * HOUR_MS}])
    assert store.carried("m", "v1") is None


def test_monitor_partials_are_listed_by_window_start_across_day_buckets_and_idempotent(store):
    day = (T0 // DAY_MS) * DAY_MS
    perf = {"confusion": [["a", "a", 3]], "scored": 1}
    rows = [WindowPartial("g", m, "v1", s, s + 60_000, i, row_count=5, late=1,
                          profile=bytes(range(256)) if i == "i1" else None, performance=perf, written_at=T0)
            for s in (day + DAY_MS, day - 60_000) for m in ("m", "n") for i in ("i2", "i1")]
    store.put_partials(rows)
    store.put_partials(rows[:2])
    store.put_partials([WindowPartial("other-group", "m", "v1", day, day + 60_000, "i1")])
    got = list(store.partials("g", day - DAY_MS, day + 2 * DAY_MS))
    assert [(p.window_start, p.model, p.instance) for p in got] == \
        [(s, m, i) for s in (day - 60_000, day + DAY_MS) for m in ("m", "n") for i in ("i1", "i2")]
    assert got[0] == rows[5]       # (day - 60_000, "m", "i1"): with its profile bytes
    assert got[1].profile is None and got[1].performance == perf
    assert [p.window_start for p in store.partials("g", day, day + 2 * DAY_MS)] == [day + DAY_MS] * 4


def test_monitor_progress_per_group_replaces_by_instance(store):
    store.put_progress([MonitorProgress("g", "i1", {"t.feedback:0": T0, "t.m.predictions:3": T0 - 10}, T0),
                        MonitorProgress("g", "i2", {}, T0), MonitorProgress("h", "i1", {"x:0": 1}, T0)])
    store.put_progress([MonitorProgress("g", "i2", {"t.feedback:1": T0 + 5}, T0 + 5)])
    assert sorted(store.progress("g"), key=lambda p: p.instance) == [
        MonitorProgress("g", "i1", {"t.feedback:0": T0, "t.m.predictions:3": T0 - 10}, T0),
        MonitorProgress("g", "i2", {"t.feedback:1": T0 + 5}, T0 + 5)]
    assert store.progress("nobody") == []


def test_counted_offsets_are_written_with_the_partials_and_replace_by_partition(store):
    partial = WindowPartial("g", "m", "v1", T0, T0 + 60_000, "i1", row_count=3)
    store.put_partials([partial], [CountedOffsets("g", "t.feedback:0", b"\x01" * 16, T0),
                                   CountedOffsets("g", "t.feedback:1", b"\x02" * 16, T0)])
    store.put_partials([], [CountedOffsets("g", "t.feedback:1", b"", T0 + 1), CountedOffsets("h", "t.feedback:0")])
    assert list(store.partials("g", T0, T0 + 1)) == [partial]
    got = sorted(store.counted("g", ["t.feedback:0", "t.feedback:1", "t.feedback:2"]), key=lambda c: c.topic_partition)
    assert [(c.topic_partition, c.runs, c.written_at) for c in got] == [("t.feedback:0", b"\x01" * 16, T0),
                                                                   ("t.feedback:1", b"", T0 + 1)]


def test_reference_profiles_by_model_version(store):
    blob = bytes(range(256)) * 10
    store.put_profile(ReferenceProfile("m", "v1", T0, blob))
    store.put_profile(ReferenceProfile("m", "v1", T0, blob))
    assert store.get_profile("m", "v1") == ReferenceProfile("m", "v1", T0, blob)
    assert store.get_profile("m", "v2") is None


def test_retrain_bookkeeping(store):
    store.put_retrain(RetrainRecord("m", "b", "in_flight", requested_at=T0 + 10, updated_at=T0 + 10, reasons=["drift"]))
    store.put_retrain(RetrainRecord("m", "a", "failed", requested_at=T0, updated_at=T0 + 5, detail="worse"))
    done = RetrainRecord("m", "b", "done", requested_at=T0 + 10, updated_at=T0 + 99, base_version="v1",
                         new_version="v2", reasons=["drift"])
    store.put_retrain(done)
    assert [(r.retrain_id, r.status) for r in store.retrains("m")] == [("a", "failed"), ("b", "done")]
    assert store.get_retrain("m", "b") == done
    assert store.get_retrain("m", "zzz") is None and store.retrains("other") == []
    assert store.last_retrain("m") is None
    store.put_last_retrain("m", T0 + 99)
    store.put_last_retrain("m", T0 + 99)
    assert store.last_retrain("m") == T0 + 99


# ---- several writers at once
def test_two_processes_writing_at_once_lose_nothing(store, backend):
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    writers = [ctx.Process(target=write_from_process, args=(backend.settings, backend.data_dir, w, 400, go))
               for w in ("p1", "p2")]
    for p in writers:
        p.start()
    go.set()
    for p in writers:
        p.join(120)
    assert [p.exitcode for p in writers] == [0, 0]
    got = list(store.feedback("m", T0, T0 + 400 * 1000, version="v1"))
    assert len(got) == 800
    assert {(r.true_label, r.label_count) for r in got} == {("p1", 1), ("p2", 1)}
    assert len(store.get_online("g", [f"shared-{j}" for j in range(400)])) == 400
