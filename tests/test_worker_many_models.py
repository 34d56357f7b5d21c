"""Twenty models served by one worker process (one consumer, batches split by topic)."""
from dataclasses import replace

from flywheel.processors.models import ModelRegistry
from flywheel.streams.publisher import Publisher, Request

from tests.test_worker_support import RunningWorker, read_topic, small_model

MODELS = [f"model{i:02d}" for i in range(20)]


def test_twenty_models_in_one_process(kafka, registry, data_dir, make_topics):
    catalog = make_topics(*MODELS)
    onnx, manifest, data = small_model()
    models = ModelRegistry(kafka, registry, data_dir, actor="test")
    for name in MODELS:
        models.register(onnx, replace(manifest, model=name, version="v1"))
    rows = data.rows(0, 30)
    publishers = {name: Publisher(kafka, registry, name) for name in MODELS}
    sent = {name: set(p.publish_many(Request(features=r) for r in rows)) for name, p in publishers.items()}
    for publisher in publishers.values():
        publisher.flush()
    with RunningWorker(kafka, registry, data_dir) as worker:
        for name in MODELS:
            got = read_topic(kafka, registry, catalog.predictions(name), "Prediction", len(rows), settle=0.0)
            assert {p["request_id"] for p, _ in got} == sent[name] and len(got) == len(rows)
            assert {p["model"] for p, _ in got} == {name}
        assert sorted(worker.served) == MODELS and len(worker._subscribed) == 20
