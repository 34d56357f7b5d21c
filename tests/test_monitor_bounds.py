"""Cardinality at the monitor is decided by registration, not by whoever writes to the topics: a
flood of records under unknown model names, an unregistered version and unknown feature names
opens no window and no metric series for them, is counted, and the registered version's window
still closes normally."""
import time

import numpy as np
from flywheel.feature_store import ReferenceProfile, StoreSettings, open_store
from flywheel.processors.monitor.process import Monitor
from flywheel.processors.monitor.profile import build_reference
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.schemas import AvroSerde
from flywheel.streams.clients import make_producer

from tests.test_monitor_process import SPEC, T0, WINDOW, _feedback, _predictions
from tests.test_worker_support import register

GOOD, NAMES, JUNK = 400, 1000, 50


def test_a_flood_of_unknown_names_opens_no_window_and_no_series(kafka, registry, make_topics, data_dir):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", "1").close()
    rng = np.random.default_rng(8)
    store = open_store(StoreSettings(), data_dir)
    reference = build_reference(SPEC, {"x": rng.normal(0, 1, 5000)}, {"c": rng.choice(["a", "b"], 5000)},
                                scores=rng.uniform(0.5, 1, 5000), labels=rng.choice(["yes", "no"], 5000))
    store.put_profile(ReferenceProfile("m", "1", T0, reference.to_bytes()))
    good = _predictions(rng, GOOD, T0)
    for i, r in enumerate(good):                 # feature names the spec does not have
        r["numeric"] = {**r["numeric"], f"junk{i % JUNK}": 1.0}
    flood = [dict(r, model=f"evil{i % NAMES}", request_id=f"e{i}") for i, r in enumerate(_predictions(rng, 2000, T0))]
    flood += [dict(r, model_version="9", request_id=f"v{i}") for i, r in enumerate(_predictions(rng, 200, T0))]
    feedback = [dict(r, model=f"evil{i}") for i, r in enumerate(_feedback(100, 50, T0))]
    producer = make_producer(kafka)
    for topic, name, records in ((catalog.predictions("m"), "Prediction", good + flood),
                                 (catalog.feedback, "FeedbackRecord", feedback)):
        serde = AvroSerde(registry, name)
        for r in records:
            producer.produce(topic, serde.encode(r), r["request_id"].encode())
    producer.flush(10)

    now = {"ms": T0 + 1}
    settings = MonitorSettings(window_seconds=WINDOW / 1000, allowed_lateness_seconds=1, idle_seconds=1,
                               group_id="mon-flood")
    monitor = Monitor(kafka, registry, store, settings, clock=lambda: now["ms"])
    metrics = monitor.metrics.registry
    unregistered = lambda: metrics.get_sample_value("flywheel_monitor_unregistered_records_total") or 0  # noqa: E731
    in_total = lambda: metrics.get_sample_value(  # noqa: E731
        "flywheel_records_in_total", {"processor": "monitor", "model": "m"}) or 0
    deadline = time.monotonic() + 30
    while (unregistered() < 2300 or in_total() < GOOD + 200) and time.monotonic() < deadline:
        monitor.step()
    # Records in count per registered model (the unregistered version's too), the rest as one name.
    assert (unregistered(), in_total(), monitor.windows.open_windows) == (2300, GOOD + 200, 1)
    assert metrics.get_sample_value("flywheel_records_in_total",
                                    {"processor": "monitor", "model": "unregistered"}) == 2000

    now["ms"] = T0 + WINDOW + 1000
    results = monitor.step()
    assert [(r.model, r.version, r.start_ms, r.rows) for r in results] == [("m", "1", T0, GOOD)]
    assert {d.feature for d in results[0].drift} | {q.feature for q in results[0].quality} <= \
        {"x", "c", "prediction.score", "prediction.label", "_volume"}
    assert metrics.get_sample_value("flywheel_monitor_unspecified_feature_values_total",
                                    {"model": "m", "version": "1"}) == GOOD
    assert {(r.model, r.model_version) for r in store.partials("mon-flood", T0, T0 + 1)} == {("m", "1")}
    # Every series of every metric is the registered version's or the one "unregistered".
    values = {(s.labels.get("model"), s.labels.get("version"), s.labels.get("feature"))
              for metric in metrics.collect() for s in metric.samples}
    assert {m for m, _, _ in values} <= {None, "m", "unregistered"}
    assert {v for _, v, _ in values} <= {None, "1"}
    assert not any(f and f.startswith("junk") for _, _, f in values)
    monitor.close()
    store.close()
