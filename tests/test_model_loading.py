"""A version that cannot serve is refused alone: `models register` test-loads the file with ONNX
Runtime and runs one row before anything goes live; in a worker, a version that fails to load
is reported and skipped while every other version and model keeps serving."""
import hashlib
import json
from dataclasses import replace

from flywheel.processors.models import ArtifactStore, EventLog
from flywheel.processors.models.refusals import RefusalLog
from flywheel.streams.publisher import Publisher, Request

from flywheel.cli import main
from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for


def _flags(kafka, data_dir):
    return ["--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix, "--data-dir", str(data_dir)]


def test_register_refuses_a_file_onnx_runtime_rejects_or_that_answers_another_shape(kafka, data_dir, make_topics,
                                                                                    tmp_path, capsys):
    make_topics()
    onnx, manifest, _ = small_model()
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    (tmp_path / "m.json").write_text(json.dumps(manifest.to_dict()))
    flags = _flags(kafka, data_dir)
    assert main([*flags, "models", "register", "m", "v1", "--onnx", str(tmp_path / "garbage.onnx"),
                 "--manifest", str(tmp_path / "m.json")]) == 1
    err = capsys.readouterr().err
    assert "ONNX Runtime cannot load it" in err and len(err.strip().splitlines()) == 1
    # A file that loads but answers 2 probabilities where the manifest declares 3 labels.
    (tmp_path / "good.onnx").write_bytes(onnx)
    three = {**manifest.to_dict(), "output": {**manifest.to_dict()["output"], "labels": ["a", "b", "c"]}}
    (tmp_path / "three.json").write_text(json.dumps(three))
    assert main([*flags, "models", "register", "m", "v1", "--onnx", str(tmp_path / "good.onnx"),
                 "--manifest", str(tmp_path / "three.json")]) == 1
    assert "the manifest declares 3" in capsys.readouterr().err
    assert not (data_dir / "models" / "m").exists() and EventLog(data_dir).events() == []
    assert main([*flags, "models", "register", "m", "v1", "--onnx", str(tmp_path / "good.onnx"),
                 "--manifest", str(tmp_path / "m.json")]) == 0


def test_a_corrupted_file_makes_only_that_version_unavailable(kafka, registry, data_dir, make_topics):
    catalog = make_topics("m", "other", "broken")
    models = register(kafka, registry, data_dir, "m", "v1")
    register(kafka, registry, data_dir, "other", "v1")
    onnx, manifest, _ = small_model("v2", seed=1)
    models.register(onnx, replace(manifest, model="m", version="v2"))
    models.canary("m", "v2", 0.5)
    # m/v2 corrupted on disk after registration (its bytes no longer match the record).
    artifact = ArtifactStore(data_dir).directory("m", "v2") / "model.onnx"
    artifact.write_bytes(artifact.read_bytes()[:-40])
    # `broken` was put in the store by hand: its record matches, ONNX Runtime refuses the bytes.
    garbage = b"not an onnx model" * 8
    store = ArtifactStore(data_dir)
    store.save(garbage, replace(manifest, model="broken", version="v1"))
    from flywheel.processors.models import Deployment, VersionRef
    state = Deployment("broken").register("v1", VersionRef("", hashlib.sha256(garbage).hexdigest()))
    models._emit(state, "REGISTERED", "v1", "", None, models.actor)
    with RunningWorker(kafka, registry, data_dir) as worker:
        wait_for(lambda: {"m", "other"} <= set(worker.served) and "broken" in worker.load_errors)
        assert worker.served["m"].roles() == [("v1", "LIVE")]     # the canary's share goes to live
        assert "broken" not in worker.served
        rows = small_model()[2].rows(0, 20)
        for model in ("m", "other"):
            publisher = Publisher(kafka, registry, model)
            for i, row in enumerate(rows):
                publisher.publish(Request(features=row, entity_id=f"e{i}"))
            publisher.flush()
        for model in ("m", "other"):
            found = read_topic(kafka, registry, catalog.predictions(model), "Prediction", 20)
            assert len(found) == 20 and {p["model_version"] for p, _ in found} == {"v1"}
        m = worker.metrics.model_refusals
        assert (m.labels("tampered")._value.get(), m.labels("unloadable")._value.get()) == (1, 1)
    assert {(r.model, r.version, r.reason) for r in RefusalLog(data_dir).records()} == \
        {("m", "v2", "tampered"), ("broken", "v1", "unloadable")}
