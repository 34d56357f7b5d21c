"""The monitor process against the real broker and the embedded store: windows of predictions and
feedback scored against the stored reference profile, written to the store and to Prometheus,
replays left out."""
import time

import numpy as np
import pytest
from flywheel.feature_store import ReferenceProfile, StoreSettings, open_store
from flywheel.processors.monitor.process import Monitor
from flywheel.processors.monitor.profile import build_reference
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.schemas import AvroSerde
from flywheel.schemas.features import Feature, FeatureSpec
from flywheel.streams.clients import make_producer
from flywheel.streams.replay.headers import REPLAY

from flywheel.views import timeline
from tests.test_worker_support import register

T0 = 1_800_000_000_000          # a window boundary for 10 s windows
WINDOW = 10_000
SPEC = FeatureSpec((Feature("x", min=-4, max=4), Feature("c", "categorical", categories=("a", "b"))))


def _predictions(rng, n, start, shift=0.0):
    x = rng.normal(shift, 1.0, n)
    return [{"request_id": f"r{start}-{i}", "entity_id": "e", "model": "m", "model_version": "1",
             "event_time": start + i, "predicted_at": start + i * (WINDOW // n), "label": "yes" if v > 0 else "no",
             "confidence": float(1 / (1 + np.exp(-abs(v)))), "numeric": {"x": float(v)},
             "categorical": {"c": str(rng.choice(["a", "b"]))}} for i, v in enumerate(x)]


def _feedback(n, correct, start, flags=()):
    return [{"request_id": f"f{start}-{i}", "entity_id": "e", "model": "m", "model_version": "1",
             "predicted_label": "yes", "true_label": "yes" if i < correct else "no", "confidence": 0.8,
             "scores": {"yes": 0.8, "no": 0.2}, "event_time": start, "predicted_at": start,
             "labelled_at": start + i, "flags": list(flags)} for i in range(n)]


@pytest.fixture
def store(data_dir):
    with open_store(StoreSettings(), data_dir) as s:
        yield s


def _register_with_reference(kafka, registry, data_dir, store, rng, rows: int) -> None:
    """Model m version 1, registered, with a reference profile of `rows` rows as trained."""
    register(kafka, registry, data_dir, "m", "1").close()
    ref_x = rng.normal(0, 1, rows)
    reference = build_reference(SPEC, {"x": ref_x}, {"c": rng.choice(["a", "b"], rows)},
                                scores=1 / (1 + np.exp(-np.abs(ref_x))), labels=np.where(ref_x > 0, "yes", "no"))
    store.put_profile(ReferenceProfile("m", "1", T0, reference.to_bytes()))


def test_monitor_scores_windows_into_the_store_and_gauges(kafka, registry, make_topics, store, data_dir):
    catalog = make_topics("m")
    rng = np.random.default_rng(4)
    _register_with_reference(kafka, registry, data_dir, store, rng, 20_000)

    producer = make_producer(kafka)
    serde = {n: AvroSerde(registry, n) for n in ("Prediction", "FeedbackRecord")}

    def send(topic, record_name, records, headers=None):
        for r in records:
            producer.produce(topic, serde[record_name].encode(r), r["request_id"].encode(), headers=headers)

    send(catalog.predictions("m"), "Prediction", _predictions(rng, 500, T0))                 # window 0: as trained
    send(catalog.predictions("m"), "Prediction", _predictions(rng, 500, T0 + WINDOW, 1.5))   # window 1: drifted
    send(catalog.predictions("m"), "Prediction", _predictions(rng, 300, T0, 9.0), [(REPLAY, b"run")])
    chosen = [dict(r, model="client-chosen") for r in _predictions(rng, 10, T0)]
    send(catalog.predictions("m"), "Prediction", chosen)                  # a model name nobody registered
    producer.produce(catalog.predictions("m"), b"\x00\x00\x00\x00\x01 not a prediction", b"bad")
    send(catalog.feedback, "FeedbackRecord", _feedback(200, 160, T0))
    send(catalog.feedback, "FeedbackRecord", _feedback(50, 0, T0 + 1000, ["replay"]))         # replayed feedback
    send(catalog.feedback, "FeedbackRecord", _feedback(50, 0, T0 + 2000), [(REPLAY, b"run")])
    producer.flush(10)

    now = {"ms": T0 + 1}
    settings = MonitorSettings(window_seconds=10, allowed_lateness_seconds=1, idle_seconds=1, group_id="mon")
    monitor = Monitor(kafka, registry, store, settings, clock=lambda: now["ms"])
    in_total = lambda model="m": monitor.metrics.registry.get_sample_value(   # noqa: E731
        "flywheel_records_in_total", {"processor": "monitor", "model": model}) or 0
    dead = lambda: monitor.metrics.registry.get_sample_value(   # noqa: E731
        "flywheel_dead_letters_total", {"processor": "monitor", "reason": "undecodable"}) or 0
    deadline = time.monotonic() + 30
    while (in_total() < 1000 or in_total("unregistered") < 10 or not dead() or monitor.windows.open_windows < 2) \
            and time.monotonic() < deadline:
        assert monitor.step() == []
    time.sleep(0.5)
    monitor.step()                     # anything still in flight
    assert in_total() == 1000          # the replayed predictions are not live traffic
    # A model name nobody registered is no label value and opens no window; the bad record is one
    # dead letter.
    assert (in_total("unregistered"), in_total("client-chosen"), dead()) == (10, 0, 1)
    assert monitor.metrics.registry.get_sample_value("flywheel_monitor_unregistered_records_total") == 10
    now["ms"] = T0 + 2 * WINDOW + 1000
    results = {r.start_ms: r for r in monitor.step() if r.model == "m"}
    assert sorted(results) == [T0, T0 + WINDOW]

    calm, drifted = results[T0], results[T0 + WINDOW]
    assert (calm.rows, calm.labelled, calm.drift_flagged) == (500, 200, False)
    assert calm.performance.metrics["accuracy"] == pytest.approx(0.8)
    assert "x" in drifted.flagged_features and drifted.labelled == 0
    assert [q for q in calm.quality if q.violated] == []

    rows = list(store.metrics("m", "1", T0, T0 + 3 * WINDOW))
    assert [(r.window_start, r.values["rows"], r.values["drift_flagged"]) for r in rows] == \
        [(T0, 500, 0.0), (T0 + WINDOW, 500, 1.0)]
    assert rows[0].values["performance.accuracy"] == pytest.approx(0.8)
    assert rows[1].detail["flagged_features"] == drifted.flagged_features
    # The flag exists from the moment the window closed, 1 s of grace after its end.
    [flagged] = timeline.drift_events("m", {"1": rows})
    assert flagged.at == rows[1].detail["closed_at"] == T0 + 2 * WINDOW + 1000

    gauge = monitor.metrics.registry.get_sample_value
    assert gauge("flywheel_drift_flagged", {"model": "m", "version": "1"}) == 1.0
    assert gauge("flywheel_drift", {"model": "m", "version": "1", "feature": "x", "statistic": "psi"}) > 0.2
    assert gauge("flywheel_model_performance", {"model": "m", "version": "1", "metric": "accuracy"}) == \
        pytest.approx(0.8)
    assert gauge("flywheel_data_quality", {"model": "m", "version": "1", "feature": "x",
                                           "rule": "out_of_range"}) is not None
    assert gauge("flywheel_labelled_examples", {"model": "m", "version": "1"}) == 0   # the last window's
    # The unregistered name had no window: no figures under any name.
    assert gauge("flywheel_labelled_examples", {"model": "client-chosen", "version": "1"}) is None
    assert gauge("flywheel_labelled_examples", {"model": "unregistered", "version": "unregistered"}) is None
    monitor.close()


def test_a_closed_window_stays_as_stored_after_late_labels_and_a_restart(kafka, registry, make_topics, store,
                                                                          data_dir):
    """Issue 12, item 3: a window stored as 30 labelled at accuracy 1.0 became 2 labelled at 0.0
    after two late labels and a restart (the new process re-read them into the window it no
    longer knew was closed). Closed windows are in the store; the late labels are counted late.
    The window is closed by event time: a label of the next window moves the watermark past it
    while the clock stands still."""
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", "1").close()      # its figures are shown under its own name
    producer = make_producer(kafka)
    feedback = AvroSerde(registry, "FeedbackRecord")

    def send(records):
        for r in records:
            producer.produce(catalog.feedback, feedback.encode(r), r["request_id"].encode(), partition=0)
        producer.flush(10)

    settings = MonitorSettings(window_seconds=10, allowed_lateness_seconds=1, idle_seconds=1, group_id="mon-restart")
    now = {"ms": T0 + WINDOW + 1000}

    def run_until(monitor, done):
        deadline = time.monotonic() + 30
        while not done() and time.monotonic() < deadline:
            monitor.step()
        assert done()

    send(_feedback(30, 30, T0))
    first = Monitor(kafka, registry, store, settings, clock=lambda: now["ms"])
    run_until(first, lambda: first.windows.open_windows == 1)
    assert first.closed == []                       # the clock alone closes nothing while records come
    send(_feedback(1, 1, T0 + WINDOW + 1500))       # the watermark: 1 s behind it, past the first window
    run_until(first, lambda: any(r.start_ms == T0 for r in first.closed))
    late = [dict(r, request_id=f"late-{i}") for i, r in enumerate(_feedback(2, 0, T0 + 5))]
    send(late)
    run_until(first, lambda: first.windows.open_windows == 1)       # folded into the next window
    first.consumer.close()                                          # gone, as after kill -9

    second = Monitor(kafka, registry, store, settings, clock=lambda: now["ms"])
    run_until(second, lambda: second.windows.open_windows == 1)     # the late labels, read again
    now["ms"] = T0 + 2 * WINDOW + 1000
    run_until(second, lambda: any(r.start_ms == T0 + WINDOW for r in second.closed))
    second.close()

    rows = {r.window_start: r.values for r in store.metrics("m", "1", T0, T0 + 3 * WINDOW)}
    assert (rows[T0]["labelled"], rows[T0]["performance.accuracy"]) == (30, 1.0)
    assert (rows[T0 + WINDOW]["labelled"], rows[T0 + WINDOW]["late"]) == (3, 2)
    assert second.metrics.registry.get_sample_value("flywheel_monitor_late_records_total",
                                                    {"model": "m", "version": "1"}) == 2


def test_a_carried_window_survives_a_restart_and_replays_do_not_move_the_watermark(kafka, registry, make_topics,
                                                                                 store, data_dir):
    """A window too small to judge (60 rows of min_count 100) is carried into the next. The carry
    is stored with the window's closed_until, so a monitor started after the first one is gone
    (no clean shutdown) judges the next window together with it: 120 rows. Replayed predictions
    dated ahead of the live ones are read meanwhile and close nothing."""
    catalog = make_topics("m")
    rng = np.random.default_rng(7)
    _register_with_reference(kafka, registry, data_dir, store, rng, 5_000)
    producer = make_producer(kafka)
    serde = AvroSerde(registry, "Prediction")

    def send(records, headers=None):
        for r in records:
            producer.produce(catalog.predictions("m"), serde.encode(r), r["request_id"].encode(), headers=headers)
        producer.flush(10)

    def run_until(monitor, done):
        deadline = time.monotonic() + 30
        while not done() and time.monotonic() < deadline:
            monitor.step()
        assert done()

    settings = MonitorSettings(window_seconds=10, allowed_lateness_seconds=1, idle_seconds=1, group_id="mon-carry")
    now = {"ms": T0 + 1}
    send(_predictions(rng, 60, T0))
    first = Monitor(kafka, registry, store, settings, clock=lambda: now["ms"])
    run_until(first, lambda: first.windows.open_windows == 1 and sum(
        w.rows for ws in first.windows._open.values() for w in ws.values()) == 60)
    now["ms"] = T0 + WINDOW + 5000                  # quiet for idle_seconds: the watermark follows the clock
    run_until(first, lambda: any(r.start_ms == T0 for r in first.closed))
    [small] = store.metrics("m", "1", T0, T0 + WINDOW)
    assert "drift_flagged" not in small.values and small.values["rows"] == 60      # carried, not judged
    assert store.carried("m", "1") is not None
    first.consumer.close()                          # gone, as after kill -9

    now["ms"] = T0 + 10 * WINDOW
    send(_predictions(rng, 60, T0 + WINDOW))
    send(_predictions(rng, 40, T0 + 5 * WINDOW), [(REPLAY, b"run")])   # dated ahead of the live ones
    second = Monitor(kafka, registry, store, settings, clock=lambda: now["ms"])
    rows = lambda: sum(w.rows for ws in second.windows._open.values() for w in ws.values())   # noqa: E731
    run_until(second, lambda: rows() == 60)
    for _ in range(5):
        second.step()                               # the replay read too
    assert second.closed == [] and second.windows.watermark.at < T0 + 2 * WINDOW
    now["ms"] += 5000
    run_until(second, lambda: any(r.start_ms == T0 + WINDOW for r in second.closed))
    second.close()
    [judged] = store.metrics("m", "1", T0 + WINDOW, T0 + 2 * WINDOW)
    assert judged.values["rows"] == 60 and "drift_flagged" in judged.values
    assert {d["feature"]: d["count"] for d in judged.detail["drift"]}["x"] == 120
    assert store.carried("m", "1") is None
