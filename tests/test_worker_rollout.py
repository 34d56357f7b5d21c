"""Rollout on a running worker: the canary share routed by entity hash within tolerance, shadow
versions never on the prediction topic (they go to <model>.shadow), a rollback effective
within one batch, and hot swaps under a steady stream losing and repeating nothing."""
import threading
import zlib
from collections import Counter

from flywheel.streams.publisher import Publisher, Request

from tests.test_worker_support import RunningWorker, read_topic, register, small_model


def _publish(kafka, registry, rows, start: int, count: int, prefix: str) -> list[str]:
    publisher = Publisher(kafka, registry, "m")
    ids = publisher.publish_many(Request(features=rows[i % len(rows)], entity_id=f"{prefix}{i}",
                                         request_id=f"{prefix}{i}") for i in range(start, start + count))
    publisher.flush()
    return ids


def test_canary_shadow_rollback_and_hot_swap(kafka, registry, data_dir, make_topics):
    catalog = make_topics("m")
    models = register(kafka, registry, data_dir, "m", "v1")
    for version, seed in (("v2", 1), ("v3", 2)):
        onnx, manifest, _ = small_model(version, seed=seed)
        from dataclasses import replace
        models.register(onnx, replace(manifest, model="m", version=version))
    models.canary("m", "v2", 0.3)
    models.shadow("m", "v3")
    rows = small_model()[2].rows(0, 500)

    with RunningWorker(kafka, registry, data_dir, max_batch=200) as worker:
        first = _publish(kafka, registry, rows, 0, 2000, "a")
        answered = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 2000)
        shadows = read_topic(kafka, registry, catalog.shadow("m"), "Prediction", 2000)

        # canary share: deterministic by entity hash, and near the configured share
        versions = {p["request_id"]: (p["model_version"], p["role"]) for p, _ in answered}
        assert sorted(versions) == sorted(first) and len(answered) == 2000
        expected = {i: ("v2", "CANARY") if zlib.crc32(i.encode()) < int(0.3 * 2 ** 32) else ("v1", "LIVE")
                    for i in first}
        assert versions == expected
        share = Counter(v for v, _ in versions.values())["v2"] / 2000
        assert abs(share - 0.3) < 0.04, share
        # shadows: every request, never on the prediction topic
        assert {(p["model_version"], p["role"]) for p, _ in shadows} == {("v3", "SHADOW")}
        assert sorted(p["request_id"] for p, _ in shadows) == sorted(first)

        # rollback: requests published after it are answered by the old canary in one batch at most
        models.rollback("m")
        after = set(_publish(kafka, registry, rows, 0, 600, "b"))
        answered = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 2600)
        late = [p for p, _ in answered if p["request_id"] in after and p["model_version"] == "v2"]
        assert len({(p["predicted_at"], p["batch_size"]) for p in late}) <= 1
        assert len([p for p, _ in answered if p["request_id"] in after]) == 600

        # hot swaps under a steady stream: promote v3 and back to v1 while requests flow
        flowing = threading.Thread(target=lambda: _publish(kafka, registry, rows, 0, 3000, "c"))
        flowing.start()
        models.promote("m", "v3")
        models.rollback("m", to="v1")
        flowing.join()
        answered = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 5600)
        swapped = worker.metrics.model_events.labels("m", "PROMOTED")._value.get()
    ids = Counter(p["request_id"] for p, _ in answered)
    assert len(ids) == 5600 and set(ids.values()) == {1}
    assert swapped == 1
    assert not any(p["role"] == "SHADOW" for p, _ in answered)
