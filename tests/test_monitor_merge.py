"""The monitor as N processes: partials of a window merged give one process's figures; the merger
waits for every partition's progress (at most merge_wait); two Monitors in one group on the real
broker store exact counts, also when the second joins mid-window (a rebalance)."""
import time
from dataclasses import replace

import numpy as np
import pytest
from confluent_kafka import TopicPartition
from flywheel.feature_store import MonitorProgress, StoreSettings, open_store
from flywheel.processors.monitor.drift import DriftThresholds
from flywheel.processors.monitor.merge import Coverage, Merger, from_row, to_row
from flywheel.processors.monitor.process import Monitor
from flywheel.processors.monitor.profile import build_reference
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.processors.monitor.windows import WindowedMonitor, merge_partials
from flywheel.schemas import AvroSerde
from flywheel.schemas.features import Feature, FeatureSpec
from flywheel.streams.clients import make_consumer, make_producer

from tests.test_monitor_process import SPEC, T0, WINDOW, _feedback, _predictions
from tests.test_worker_support import register

W = 1000


def _reference(rng):
    x = rng.normal(0, 1, 5000)
    return build_reference(SPEC, {"x": x}, {"c": rng.choice(["a", "b"], 5000)},
                           scores=1 / (1 + np.exp(-np.abs(x))), labels=np.where(x > 0, "yes", "no"))


def _figures(result) -> dict:
    return {"rows": result.rows, "labelled": result.labelled, "late": result.late, **result.metrics()}


def test_partials_of_two_processes_merged_score_as_one_process_over_all_records():
    """Windows under the sketches' k (200) values, where a KLL sketch is exact: merged or read in
    one pass, the same figures. Above it both are within the sketch's rank error, not equal."""
    rng = np.random.default_rng(7)
    reference = _reference(rng)
    predictions = _predictions(rng, 190, 0, shift=0.3) + _predictions(rng, 150, WINDOW)
    feedback = _feedback(400, 300, 0) + _feedback(100, 20, WINDOW)
    sources = [("p", i % 4, i) for i in range(len(predictions))]
    labels = [("f", i % 3, i) for i in range(len(feedback))]

    def monitor():
        return WindowedMonitor(WINDOW, 0, lambda m, v: reference, DriftThresholds(min_count=10))

    one, a, b = monitor(), monitor(), monitor()
    one.add_predictions(predictions, sources)
    one.add_feedback(feedback, labels)
    for owner, mine in ((a, {0, 1}), (b, {2, 3})):     # partition 0 and 1 of each topic to a, the rest to b
        owner.add_predictions([r for r, s in zip(predictions, sources) if s[1] in mine],
                              [s for s in sources if s[1] in mine])
        owner.add_feedback([r for r, s in zip(feedback, labels) if s[1] in mine], [s for s in labels if s[1] in mine])
    expected = one.close_due(3 * WINDOW)
    by_window: dict[tuple, list] = {}
    for p in a.close(3 * WINDOW) + b.close(3 * WINDOW):
        stored = to_row(p, "g", "x", 0)                           # through the store's form
        by_window.setdefault((p.model, p.version, p.start_ms), []).append(from_row(stored))
    merger = monitor().scorer
    got = [merger.score(merge_partials(by_window[k])) for k in sorted(by_window)]
    assert [(r.start_ms, r.rows, r.labelled) for r in got] == [(0, 190, 400), (WINDOW, 150, 100)]
    for r, e in zip(got, expected):
        assert _figures(r) == pytest.approx(_figures(e))
    assert got[0].drift and got[0].quality and got[0].performance.metrics["accuracy"] == pytest.approx(0.75)


def test_a_version_without_reference_in_one_partial_leaves_the_merged_window_unprofiled():
    spec = FeatureSpec((Feature("x"),))
    reference = build_reference(spec, {"x": [0.0, 1.0]}, {}, [0.5, 0.5], ["a", "b"])
    with_ref = WindowedMonitor(W, 0, lambda m, v: reference)
    without = WindowedMonitor(W, 0, lambda m, v: None)
    record = {"request_id": "r", "model": "m", "model_version": "1", "predicted_at": 5, "numeric": {"x": 1.0}}
    with_ref.add_predictions([record])
    without.add_predictions([dict(record, request_id="s")])
    merged = merge_partials(with_ref.close(W) + without.close(W))
    assert (merged.rows, merged.profile) == (2, None)


def test_the_merger_waits_for_every_partitions_progress_then_merges_or_gives_up_after_the_wait():
    merger = Merger(wait_ms=5000)
    window = ("m", "1", 0)
    merger.note([(window, W), (("m", "1", W), 2 * W)], now_ms=W + 100)
    partitions = ["f:0", "f:1", "p:0"]
    one = MonitorProgress("g", "a", {"f:0": W, "p:0": 2 * W})
    assert merger.due(Coverage.of([one]), partitions, W + 200) == {}          # f:1 unaccounted for
    stale = MonitorProgress("g", "b", {"f:1": 0})
    assert merger.due(Coverage.of([one, stale]), partitions, W + 200) == {}   # b has not closed it yet
    b = MonitorProgress("g", "b", {"f:1": W})
    assert merger.due(Coverage.of([one, b]), partitions, W + 300) == {window: []}   # the next waits for f:0, f:1
    merger.done([window])
    merger.note([(window, W)], now_ms=W + 400)                                # listed again: merged already
    assert list(merger.pending) == [("m", "1", W)]
    assert merger.due(Coverage.of([one, b]), partitions, W + 100 + 4999) == {}
    assert merger.due(Coverage.of([one, b]), partitions, W + 100 + 5000) == {("m", "1", W): ["f:0", "f:1"]}


# ---- two Monitors in one group on the real broker
def _produce(kafka, registry, catalog, predictions, feedback):
    producer = make_producer(kafka)
    serde = {n: AvroSerde(registry, n) for n in ("Prediction", "FeedbackRecord")}
    for r in predictions:
        producer.produce(catalog.predictions("m"), serde["Prediction"].encode(r), r["request_id"].encode())
    for r in feedback:
        producer.produce(catalog.feedback, serde["FeedbackRecord"].encode(r), r["request_id"].encode())
    producer.flush(10)


def _read_all(monitors, kafka, topics, timeout=60.0):
    """Step every monitor until each owns some partitions (no rebalance under way), together all,
    and each has read its own."""
    probe = make_consumer(kafka, "merge-probe")
    try:
        meta = probe.list_topics(timeout=10).topics
        wanted = {(t, p) for t in topics for p in meta[t].partitions}
        ends = {tp: probe.get_watermark_offsets(TopicPartition(*tp), timeout=10)[1] for tp in wanted}
    finally:
        probe.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in monitors:
            m.step()
        owned = [{(tp.topic, tp.partition): tp.offset for tp in m.consumer.position(m.consumer.assignment())}
                 for m in monitors]
        if all(owned) and set().union(*owned) == wanted and all(
                o >= ends[tp] or (ends[tp] == 0) for positions in owned for tp, o in positions.items()):
            return
    raise AssertionError("the monitors did not read every partition")


def _merged(monitors, store, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in monitors:
            m.step()
        rows = list(store.metrics("m", "1", T0, T0 + WINDOW))
        if rows:
            return rows
    raise AssertionError("no merged window")


@pytest.mark.parametrize("join_mid_window", [False, True], ids=["together", "second-joins-mid-window"])
def test_two_monitors_in_one_group_store_exact_counts(kafka, registry, make_topics, data_dir, join_mid_window):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", "1").close()
    rng = np.random.default_rng(3)
    predictions, feedback = _predictions(rng, 800, T0), _feedback(300, 240, T0)
    now = {"ms": T0 + 1}
    settings = dict(window_seconds=WINDOW / 1000, allowed_lateness_seconds=1, idle_seconds=1, group_id="mon-2",
                    poll_timeout_seconds=0.1, progress_seconds=0.2, merge_wait_seconds=600)
    store = open_store(StoreSettings(), data_dir)

    def monitor(name):
        return Monitor(kafka, registry, open_store(StoreSettings(), data_dir),
                       MonitorSettings(instance_id=name, **settings), clock=lambda: now["ms"])

    first = monitor("a")
    monitors = [first] if join_mid_window else [first, monitor("b")]
    half = len(predictions) // 2
    _produce(kafka, registry, catalog, predictions[:half], feedback[:100])
    _read_all(monitors, kafka, [catalog.feedback, catalog.predictions("m")])
    if join_mid_window:
        assert first.windows.open_windows == 1
        monitors.append(monitor("b"))                       # the group rebalances: a drops its window
    _produce(kafka, registry, catalog, predictions[half:], feedback[100:])
    _read_all(monitors, kafka, [catalog.feedback, catalog.predictions("m")])
    now["ms"] = T0 + WINDOW + 1000
    [row] = _merged(monitors, store)
    assert (row.values["rows"], row.values["labelled"], row.values["late"]) == (800, 300, 0)
    assert row.values["performance.accuracy"] == pytest.approx(0.8)
    assert row.detail["missing_partitions"] == []
    assert {p.instance.split("/")[0] for p in store.partials("mon-2", T0, T0 + 1)} == {"a", "b"}
    [merger] = [m for m in monitors if m.closed]
    assert merger.metrics.registry.get_sample_value("flywheel_labelled_examples",
                                                    {"model": "m", "version": "1"}) == 300
    for m in monitors:
        m.close()
    store.close()


def test_partitions_taken_over_behind_the_clock_land_in_their_own_window(kafka, registry, make_topics, data_dir):
    """b stops without writing its share after the window closed on a's clock (as a killed process
    would): a takes its partitions over, reads them from b's committed offsets behind the clock,
    and their records go into partials of their own window, not into a later one as late."""
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", "1").close()
    predictions, feedback = _predictions(np.random.default_rng(5), 800, T0), _feedback(300, 240, T0)
    now = {"ms": T0 + 1}
    settings = MonitorSettings(window_seconds=WINDOW / 1000, allowed_lateness_seconds=1, idle_seconds=1,
                               group_id="mon-takeover", poll_timeout_seconds=0.1, progress_seconds=0.2,
                               merge_wait_seconds=600)
    store = open_store(StoreSettings(), data_dir)
    a, b = (Monitor(kafka, registry, open_store(StoreSettings(), data_dir), replace(settings, instance_id=name),
                    clock=lambda: now["ms"]) for name in ("a", "b"))
    _produce(kafka, registry, catalog, predictions, feedback)
    _read_all([a, b], kafka, [catalog.feedback, catalog.predictions("m")])
    now["ms"] = T0 + WINDOW + 1000
    a.step()                    # a's share is written; b's partitions are not vouched for: no merge
    assert list(store.metrics("m", "1", T0, T0 + WINDOW)) == []
    b.close()
    [row] = _merged([a], store)
    assert (row.values["rows"], row.values["labelled"], row.values["late"]) == (800, 300, 0)
    assert row.detail["missing_partitions"] == []
    a.close()
    store.close()


def test_a_restart_counts_no_feedback_twice(kafka, registry, make_topics, data_dir):
    """One partition: 100 labels of window 0, one of window 1, then 20 more of window 0 (within the
    lateness). Window 0 closes and is merged; window 1 stays open, so the commit stays at its
    first record. The monitor is killed (no clean close) and restarted: every label must be
    counted once over the stored windows."""
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", "1").close()
    labels = _feedback(100, 100, T0) + _feedback(1, 1, T0 + WINDOW + 10) + _feedback(20, 20, T0 + WINDOW - 100)
    producer, serde = make_producer(kafka), AvroSerde(registry, "FeedbackRecord")
    for r in labels:
        producer.produce(catalog.feedback, serde.encode(r), r["request_id"].encode(), partition=0)
    producer.flush(10)
    now = {"ms": T0 + WINDOW + 20}
    settings = MonitorSettings(window_seconds=WINDOW / 1000, allowed_lateness_seconds=1, idle_seconds=1,
                               group_id="mon-restart", instance_id="a", poll_timeout_seconds=0.1,
                               progress_seconds=0.2, merge_wait_seconds=600)
    store = open_store(StoreSettings(), data_dir)

    def monitor():
        return Monitor(kafka, registry, open_store(StoreSettings(), data_dir), settings, clock=lambda: now["ms"])

    topics = [catalog.feedback, catalog.predictions("m")]
    first = monitor()
    _read_all([first], kafka, topics)
    now["ms"] = T0 + WINDOW + 1500          # window 0 closes and is merged; window 1 stays open
    first.step()
    assert [r.values["labelled"] for r in store.metrics("m", "1", T0, T0 + 1)] == [120]
    first.consumer.close()                  # killed: no clean shutdown, nothing more committed
    first._models.close()
    second = monitor()
    try:
        _read_all([second], kafka, topics)
        now["ms"] = T0 + 2 * WINDOW + 1500
        deadline = time.monotonic() + 30
        while len(rows := list(store.metrics("m", "1", T0, T0 + 2 * WINDOW))) < 2 and time.monotonic() < deadline:
            second.step()
        assert sum(r.values["labelled"] for r in rows) == len(labels)
        assert [(r.window_start, r.values["labelled"]) for r in rows] == [(T0, 120), (T0 + WINDOW, 1)]
    finally:
        second.close()
        store.close()
