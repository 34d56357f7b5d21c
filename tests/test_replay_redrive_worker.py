"""End to end with the real inference worker: requests dead-lettered for an unseen category are
re-driven after the fix (a promoted version that knows the category) and reach the prediction
topic; those that still fail stay dead letters; the counts add up."""
import json
from dataclasses import replace

from flywheel.schemas import AvroSerde
from flywheel.streams.clients import make_producer
from flywheel.streams.replay.headers import REDRIVE

from flywheel.cli import main
from tests.replay_helpers import header
from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for

OLD, NEW = (("seg", ("a", "b")),), (("seg", ("a", "b", "c")),)


def requests(registry) -> dict[str, list[bytes]]:
    _, _, data = small_model(categories=OLD)
    serde = AvroSerde(registry, "InferenceRequest")

    def request(i: int, seg: str, drop: str | None = None) -> bytes:
        numeric = {k: v for k, v in data.rows(i, i + 1)[0].items() if not isinstance(v, str) and k != drop}
        return serde.encode({"request_id": f"r{i}", "entity_id": f"e{i}", "model": "m", "event_time": 1_000 + i,
                             "numeric": numeric, "categorical": {"seg": seg}, "dense": None, "metadata": {}})
    return {"good": [request(i, "ab"[i % 2]) for i in range(6)],
            "unseen": [request(i, "c") for i in range(6, 10)],
            "missing": [request(i, "a", drop="f03") for i in range(10, 12)]}


def test_fixed_dead_letters_reach_the_prediction_topic(kafka, registry, data_dir, make_topics, capsys):
    catalog = make_topics("m")
    models = register(kafka, registry, data_dir, "m", categories=OLD)
    sent = requests(registry)
    producer = make_producer(kafka)
    for kind, values in sent.items():
        for value in values:
            producer.produce(catalog.requests("m"), value, key=b"k", headers=[("trace", kind.encode())])
    producer.flush(10)

    with RunningWorker(kafka, registry, data_dir) as worker:
        read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 6)
        dead = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", 6)
        assert sorted(d["reason"] for d, _ in dead) == ["missing_feature"] * 2 + ["unseen_category"] * 4

        onnx, manifest, _ = small_model("v2", categories=NEW)  # the fix: a version that knows "c"
        models.register(onnx, replace(manifest, model="m", version="v2"))
        models.promote("m", "v2")
        wait_for(lambda: worker.served.get("m") and worker.served["m"].live.version == "v2")

        code = main(["--bootstrap", kafka.bootstrap_servers, "--topic-prefix", kafka.topic_prefix,
                     "--data-dir", str(data_dir), "replay", "dead-letters", "--processor", "worker",
                     "--run-id", "fix", "--json"])
        assert code == 0
        report = json.loads(capsys.readouterr().out)
        assert report["totals"] == {"redriven": 4, "still_dead": 2}

        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 10)
    redriven = [(p, m) for p, m in predictions if header(m, REDRIVE) == b"fix"]
    assert sorted(p["request_id"] for p, _ in redriven) == [f"r{i}" for i in range(6, 10)]
    assert {(p["model_version"], header(m, "trace")) for p, m in redriven} == {("v2", b"unseen")}
    assert len(predictions) == 10
    letters = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", 8)
    again = [d for d, m in letters if header(m, REDRIVE) == b"fix"]
    assert [(d["reason"], d["attempt"]) for d in again] == [("missing_feature", 2)] * 2
    assert len(letters) == 6 + 2  # the originals stay; nothing else was dead-lettered
