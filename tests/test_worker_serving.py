"""The worker end to end on the real broker: predictions for every request, headers carried
over, canary share, shadows never on the prediction topic, rollback within one batch, hot swap."""
import pytest
from flywheel.streams.publisher import Publisher, Request

from tests.test_worker_support import RunningWorker, read_topic, register, small_model


@pytest.mark.parametrize("mode", [dict(), dict(exactly_once=False, cache_size=1000)],
                         ids=["exactly-once", "at-least-once+cache"])
def test_predicts_every_request_and_carries_headers(kafka, registry, data_dir, make_topics, mode):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    _, manifest, data = small_model()
    publisher = Publisher(kafka, registry, "m", manifest.features)
    rows = data.rows(0, 50) * 4      # repeated feature rows: what a prediction cache is for
    ids = publisher.publish_many(Request(features=row, entity_id=f"e{i}") for i, row in enumerate(rows))
    publisher._out.producer.produce(catalog.requests("m"), publisher._serde.encode(
        publisher.to_record(Request(features=data.rows(0, 1)[0], request_id="replayed"))),
        key=b"e-replay", headers=[("flywheel-replay", b"run-1")])
    publisher.flush()
    with RunningWorker(kafka, registry, data_dir, **mode) as worker:
        got = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 201)
    assert sorted(p["request_id"] for p, _ in got) == sorted(ids + ["replayed"])
    by_id = {p["request_id"]: (p, m) for p, m in got}
    p, m = by_id["replayed"]
    assert dict(m.headers() or []) == {"flywheel-replay": b"run-1"}
    # keyed by request id like labels (co-partitioned for the joiner), not by the request's entity key
    assert m.key() == b"replayed" and all(m.key() == p["request_id"].encode() for p, m in got)
    p, m = by_id[ids[0]]
    assert p["model_version"] == "v1" and p["role"] == "LIVE" and p["label"] in manifest.output.labels
    assert abs(sum(p["scores"].values()) - 1) < 1e-3 and p["numeric"]["f00"] == data.rows(0, 1)[0]["f00"]
    assert worker.metrics.predictions.labels("m", "v1", "LIVE")._value.get() == 201
    if mode.get("cache_size"):
        assert worker.metrics.cache_lookups.labels("m")._value.get() == 201
        assert worker.metrics.cache_hits.labels("m")._value.get() >= 150
        cached = [by_id[i][0] for i in ids[50:]]
        assert all(p["scores"] == by_id[ids[k % 50]][0]["scores"] for k, p in enumerate(cached, start=50))
