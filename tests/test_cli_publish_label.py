"""`flywheel publish` and `flywheel label` as a new user meets them: a model that is not
registered is refused, every bad line is named, a bad file sends nothing, values in messages are
clipped, labels are checked against the model's classes, and unknown request ids are explained."""
import json
import time

from flywheel.feature_store.records import PredictionRecord

from flywheel.cli import main
from flywheel.wiring import feature_store_for
from tests.test_worker_support import read_topic, register

PLANS = (("plan", ("free", "pro")),)


def _flags(kafka, data_dir):
    return ["--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix, "--data-dir", str(data_dir)]


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err and "Error(" not in err, err


def _row(i: int, **changes) -> str:
    features = {f"f0{k}": float(k) for k in range(8)} | {"plan": "pro"} | changes
    return json.dumps({"features": features, "entity_id": f"e{i}"})


def test_publish_refuses_a_model_that_is_not_registered(kafka, data_dir, make_topics, tmp_path, capsys):
    make_topics()
    lines = tmp_path / "r.jsonl"
    lines.write_text(json.dumps({"x": 1.0}) + "\n")
    assert main([*_flags(kafka, data_dir), "publish", "-m", "nosuchmodel", str(lines)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "'nosuchmodel' is not registered" in err and "--create-topics" in err
    assert main([*_flags(kafka, data_dir), "publish", "-m", "nosuchmodel", "--create-topics", str(lines)]) == 0
    assert "published 1 request(s)" in capsys.readouterr().err


def test_a_bad_file_names_every_bad_line_and_sends_nothing(kafka, registry, data_dir, make_topics, tmp_path, capsys):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", categories=PLANS)
    lines = tmp_path / "r.jsonl"
    lines.write_text("\n".join([_row(1), '{"f00": ', _row(3, f01=None), _row(4, plan="x" * 1_000_000),
                                _row(5, f02="high"), _row(6)]) + "\n")
    assert main([*_flags(kafka, data_dir), "publish", "-m", "m", str(lines)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    _no_traceback("\n".join(err))
    err = [e for e in err if e.startswith("flywheel publish:")]   # not the model training's warnings
    assert [e.split(":")[1].strip() for e in err[:-1]] == ["line 2", "line 3", "line 4", "line 5"]
    assert "feature 'f01': required and missing" in err[1]
    assert "was not seen in training" in err[2] and "1,000,002 chars" in err[2]
    assert all(len(e) < 300 for e in err)
    assert err[-1] == "flywheel publish: 4 bad line(s); nothing sent"
    assert read_topic(kafka, registry, catalog.requests("m"), "InferenceRequest", 0, timeout=1) == []


def test_a_megabyte_request_is_a_line_error_not_a_traceback(kafka, registry, data_dir, make_topics, tmp_path, capsys):
    catalog = make_topics("big")
    lines = tmp_path / "r.jsonl"
    lines.write_text(json.dumps({"x": 1.0}) + "\n" + json.dumps({"blob": "y" * 1_048_576}) + "\n")
    assert main([*_flags(kafka, data_dir), "publish", "-m", "big", "--create-topics", str(lines)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    _no_traceback("\n".join(err))
    assert len(err) == 1 and err[0].startswith("flywheel publish: line 2: the request is 1,048,")
    assert err[0].endswith("over the producer's 1,000,000-byte message limit; nothing sent")
    assert read_topic(kafka, registry, catalog.requests("big"), "InferenceRequest", 0, timeout=1) == []


def test_label_usage_mistakes_are_one_line(kafka, data_dir, make_topics, tmp_path, capsys):
    make_topics()
    assert main([*_flags(kafka, data_dir), "label", "r1"]) == 1
    err = capsys.readouterr().err.strip()
    _no_traceback(err)
    assert err == "flywheel label: request r1: give exactly one of a label or a value; nothing sent"
    rows = tmp_path / "labels.jsonl"
    rows.write_text('{"request_id": "r2", "label": "a"}\n{"label": "b"}\n{"request_id": \n[1]\n')
    assert main([*_flags(kafka, data_dir), "label", "--file", str(rows)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    _no_traceback("\n".join(err))
    assert err == ['flywheel label: line 2: needs "request_id" (a string)',
                   "flywheel label: line 3: Expecting value: line 1 column 15 (char 14)",
                   "flywheel label: line 4: expected a JSON object",
                   "flywheel label: 3 bad label(s); nothing sent"]


def test_labels_are_checked_against_the_models_classes(kafka, registry, data_dir, config, make_topics, capsys):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    store = feature_store_for(config)
    now = int(time.time() * 1000)
    store.put_predictions([PredictionRecord("known", "e1", "m", "v1", now, now, label="class_0")])
    store.close()
    # the stored prediction names the model: no -m needed
    assert main([*_flags(kafka, data_dir), "label", "known", "maybe"]) == 1
    err = capsys.readouterr().err
    assert "label 'maybe' is not a class of model 'm' (class_0, class_1)" in err and "nothing sent" in err
    assert main([*_flags(kafka, data_dir), "label", "unstored", "maybe", "-m", "m"]) == 1
    assert "not a class of model 'm'" in capsys.readouterr().err
    assert main([*_flags(kafka, data_dir), "label", "known", "--value", "2.5"]) == 1
    assert "is a classifier: give a label" in capsys.readouterr().err
    assert main([*_flags(kafka, data_dir), "label", "known", "class_1"]) == 0
    assert "no prediction stored" not in capsys.readouterr().err
    assert main([*_flags(kafka, data_dir), "label", "unstored", "class_0", "-m", "m"]) == 0
    err = capsys.readouterr().err
    assert "1 label(s) for requests with no prediction stored yet (unstored): pending" in err
    assert "up to 600s" in err and "unknown_request" in err
    sent = read_topic(kafka, registry, catalog.labels, "GroundTruth", 2)
    assert sorted((v["request_id"], v["label"], v["model"]) for v, _ in sent) == [
        ("known", "class_1", "m"), ("unstored", "class_0", "m")]
