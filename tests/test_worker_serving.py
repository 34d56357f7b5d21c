"""The worker end to end on the real broker: predictions for every request, headers carried
over, canary share, shadows never on the prediction topic, rollback within one batch, hot swap."""
import numpy as np

from streams.publisher import Publisher, Request
from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for


def test_predicts_every_request_and_carries_headers(kafka, registry, data_dir, make_topics):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    _, manifest, data = small_model()
    publisher = Publisher(kafka, registry, "m", manifest.features)
    ids = publisher.publish_many(Request(features=row, entity_id=f"e{i}") for i, row in enumerate(data.rows(0, 200)))
    publisher._out.producer.produce(catalog.requests("m"), publisher._serde.encode(
        publisher.to_record(Request(features=data.rows(0, 1)[0], request_id="replayed"))),
        key=b"e-replay", headers=[("flywheel-replay", b"run-1")])
    publisher.flush()
    with RunningWorker(kafka, registry, data_dir) as worker:
        got = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 201)
    assert sorted(p["request_id"] for p, _ in got) == sorted(ids + ["replayed"])
    by_id = {p["request_id"]: (p, m) for p, m in got}
    p, m = by_id["replayed"]
    assert dict(m.headers() or []) == {"flywheel-replay": b"run-1"}
    p, m = by_id[ids[0]]
    assert p["model_version"] == "v1" and p["role"] == "LIVE" and p["label"] in manifest.output.labels
    assert abs(sum(p["scores"].values()) - 1) < 1e-3 and p["numeric"]["f00"] == data.rows(0, 1)[0]["f00"]
    assert worker.metrics.predictions.labels("m", "v1", "LIVE")._value.get() == 201
