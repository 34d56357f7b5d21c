"""`flywheel import`: a scikit-learn pipeline file or an ONNX file plus a CSV sample become a
serving version (spec inferred, converted, labels from the model, reference profile stored), and
what cannot serve is refused in one line before anything is registered."""
import csv

import joblib
import numpy as np
import onnx
import pytest
from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.models import ModelRegistry
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.processors.models.store import ArtifactStore
from flywheel.processors.monitor.drift import DriftThresholds, compare
from flywheel.processors.monitor.profile import Profile
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.processors.training import train
from flywheel.processors.worker.sessions import LoadedVersion
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from flywheel.cli import main

PLANS = ("free", "pro", "team")


def _flags(kafka, data_dir):
    return ["--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix, "--data-dir", str(data_dir)]


@pytest.fixture
def sample(tmp_path):
    rng = np.random.default_rng(3)
    n = 400
    age, spend = rng.normal(40, 10, n), rng.gamma(2.0, 30.0, n)
    plan = rng.choice(PLANS, n)
    churned = np.where((age < 38) ^ (plan == "free"), "yes", "no")
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "spend", "plan", "churned"])
        w.writerows(zip(np.round(age, 3), np.round(spend, 3), plan, churned))
    return path, {"age": age.round(3), "spend": spend.round(3), "plan": plan}, churned


def test_a_pipeline_with_a_one_hot_encoder_becomes_a_serving_version(kafka, registry, data_dir, sample, tmp_path,
                                                                    make_topics, capsys):
    import pandas as pd
    make_topics()
    path, columns, churned = sample
    frame = pd.DataFrame(columns)
    pipeline = Pipeline([("prep", ColumnTransformer([("num", "passthrough", ["age", "spend"]),
                                                     ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])),
                         ("lr", LogisticRegression(max_iter=500))]).fit(frame, churned)
    joblib.dump(pipeline, tmp_path / "pipeline.joblib")
    assert main([*_flags(kafka, data_dir), "import", "churn", "v1", "--sklearn", str(tmp_path / "pipeline.joblib"),
                 "--sample", str(path), "--target", "churned"]) == 0
    err = capsys.readouterr().err
    assert "registered churn v1: 2 numeric, 1 categorical features, answers no, yes; answers the 400 sample rows" in err
    models = ModelRegistry(kafka, registry, data_dir)
    manifest = models.manifest("churn", "v1")
    assert models.deployment("churn").live_version == "v1"
    models.close()
    assert [f.name for f in manifest.features.numeric] == ["age", "spend"]
    assert [(f.name, f.categories) for f in manifest.features.categorical] == [("plan", PLANS)]
    assert manifest.output.labels == ("no", "yes") and manifest.training_metrics["sample_accuracy"] > 0.6
    with open_store(StoreSettings(), data_dir) as store:
        reference = Profile.from_bytes(store.get_profile("churn", "v1").profile)
    # the sample's profile is what the monitor measures windows against: shifted ages drift, the
    # sample's own distribution does not
    drifted = {d.feature: d.flagged for d in _window_drift(reference, columns, age_shift=15.0)}
    steady = {d.feature: d.flagged for d in _window_drift(reference, columns, age_shift=0.0)}
    assert drifted["age"] and not drifted["spend"] and not any(steady.values())
    # served as the worker serves it: the layout matrix in, the pipeline's own probabilities out
    onnx_bytes = (data_dir / "models" / "churn" / "v1" / "model.onnx").read_bytes()
    x = MatrixLayout(manifest.features).build(np.c_[columns["age"], columns["spend"]].astype(np.float32),
                                              [list(columns["plan"])])
    served = LoadedVersion(manifest, onnx_bytes).run(x)
    assert np.abs(served - pipeline.predict_proba(frame)).max() < 1e-4
    unseen = MatrixLayout(manifest.features).build(np.array([[30.0, 50.0]], np.float32), [[None]])
    assert np.allclose(LoadedVersion(manifest, onnx_bytes).run(unseen),
                       pipeline.predict_proba(pd.DataFrame({"age": [30.0], "spend": [50.0], "plan": ["gold"]})),
                       atol=1e-4)   # an unknown category reaches the pipeline's encoder as unknown


def _window_drift(reference, columns, age_shift: float):
    rng = np.random.default_rng(9)
    picked = rng.choice(len(columns["age"]), 300)
    window = reference.empty_like()
    window.add_columns(300, {"age": columns["age"][picked] + age_shift, "spend": columns["spend"][picked]},
                       {"plan": list(columns["plan"][picked])})
    return compare(reference, window, DriftThresholds.of(MonitorSettings()))


def test_an_onnx_file_in_the_layout_takes_its_labels_from_the_target(kafka, data_dir, sample, tmp_path,
                                                                    make_topics, capsys):
    make_topics()
    path, columns, churned = sample
    from flywheel.processors.importing.sample import Sample
    spec = Sample.of(path).feature_spec("churned")
    trained = train("x", "v", np.c_[columns["age"], columns["spend"]].astype(np.float32), churned, spec,
                    [list(columns["plan"])], kind="gbt")
    (tmp_path / "m.onnx").write_bytes(trained.onnx_bytes)
    assert main([*_flags(kafka, data_dir), "import", "fraud", "v1", "--onnx", str(tmp_path / "m.onnx"),
                 "--sample", str(path), "--target", "churned"]) == 0
    err = capsys.readouterr().err
    assert "registered fraud v1: 2 numeric, 1 categorical features, answers no, yes" in err
    assert "its answers were not checked (give --expected columns of the sample)" in err
    # with the model's known answers in the sample, every row is checked; columns swapped, refused
    x = MatrixLayout(spec).build(np.c_[columns["age"], columns["spend"]].astype(np.float32), [list(columns["plan"])])
    p_no, p_yes = LoadedVersion(trained.manifest, trained.onnx_bytes).run(x).T
    for name, order in (("known.csv", ["age", "spend"]), ("swapped.csv", ["spend", "age"])):
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f).writerows([[*order, "plan", "churned", "p_no", "p_yes"],
                                     *zip(*(columns[c] for c in order), columns["plan"], churned, p_no, p_yes)])
    flags = ["--onnx", str(tmp_path / "m.onnx"), "--target", "churned", "--expected", "p_no,p_yes"]
    assert main([*_flags(kafka, data_dir), "import", "fraud", "v2", "--sample", str(tmp_path / "known.csv"),
                 *flags]) == 0
    assert "answers the 400 sample rows as the sample's expected columns p_no, p_yes" in capsys.readouterr().err
    assert main([*_flags(kafka, data_dir), "import", "fraud", "v3", "--sample", str(tmp_path / "swapped.csv"),
                 *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert "differ from the sample's expected columns p_no, p_yes on" in err and "of 400 rows" in err
    assert len(err.splitlines()) == 1 and "fed spend, age, plan one-hot [free, pro, team]" in err


@pytest.mark.parametrize("change, message", [
    ({"--target": "nosuch"}, "column 'nosuch' is not in the sample (age, spend, plan, churned)"),
    ({"--onnx": "bad.onnx"}, "not an ONNX model"),
    ({"--onnx": "narrow.onnx"}, "the ONNX model's one input 'input' is 3 columns wide, the sample's features make 5"),
    ({"--sklearn": "garbage.pkl"}, "is not a pickled scikit-learn model"),
])
def test_what_cannot_serve_is_refused_in_one_line(kafka, data_dir, sample, tmp_path, make_topics, capsys,
                                                  change, message):
    make_topics()
    path, _, _ = sample
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    (tmp_path / "garbage.pkl").write_bytes(b"not a pickle")
    narrow = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input"], ["probabilities"])], "g",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 3])],
        [onnx.helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [None, 3])]))
    (tmp_path / "narrow.onnx").write_bytes(narrow.SerializeToString())
    args = {"--onnx": "narrow.onnx", "--target": "churned", **change}
    if "--sklearn" in args:
        args.pop("--onnx")
    argv = [a for k, v in args.items() for a in (k, str(tmp_path / v) if k in ("--onnx", "--sklearn") else v)]
    assert main([*_flags(kafka, data_dir), "import", "m", "v1", "--sample", str(path), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (data_dir / "models" / "m").exists()   # nothing registered


def test_the_feature_spec_is_inferred_from_the_sample(tmp_path):
    from flywheel.processors.importing import Sample
    path = tmp_path / "s.csv"
    path.write_text("tier,age,code,label\ngold,41,1,yes\nsilver,,2,no\ngold,37.5,x9,no\n")
    sample = Sample.of(path)
    spec = sample.feature_spec("label")
    assert [(f.name, f.kind, f.categories) for f in spec.features] == [
        ("age", "numeric", ()), ("tier", "categorical", ("gold", "silver")),
        ("code", "categorical", ("1", "2", "x9"))]          # codes stay as written, not 1.0
    data = sample.dataset(spec, "label")
    assert np.isnan(data.numeric[1, 0]) and data.categorical[1] == ["1", "2", "x9"]
    assert Sample.of({"a": [1, 2], "b": ["x", None]}).feature_spec(None).get("b").categories == ("x",)


def test_training_rows_given_apart_are_the_drift_reference_and_their_categories_serve(
        kafka, data_dir, sample, tmp_path, make_topics, capsys):
    import pandas as pd
    make_topics()
    path, columns, churned = sample
    pipeline = Pipeline([("prep", ColumnTransformer([("num", "passthrough", ["age", "spend"]),
                                                     ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])),
                         ("lr", LogisticRegression(max_iter=500))]).fit(pd.DataFrame(columns), churned)
    joblib.dump(pipeline, tmp_path / "pipeline.joblib")
    with open(tmp_path / "trained.csv", "w", newline="") as f:       # 250 rows, one plan the sample lacks
        csv.writer(f).writerows([["age", "spend", "plan"], *[[30 + i % 20, 10.0 * (i % 7), "team" if i % 5 else
                                                              "enterprise"] for i in range(250)]])
    assert main([*_flags(kafka, data_dir), "import", "churn", "v1", "--sklearn", str(tmp_path / "pipeline.joblib"),
                 "--sample", str(path), "--target", "churned", "--reference", str(tmp_path / "trained.csv")]) == 0
    assert "answers the 400 sample rows as the original model's answers" in capsys.readouterr().err
    manifest = ArtifactStore(data_dir).manifest("churn", "v1")
    assert manifest.features.get("plan").categories == ("enterprise", "free", "pro", "team")
    with open_store(StoreSettings(), data_dir) as store:
        reference = Profile.from_bytes(store.get_profile("churn", "v1").profile)
    assert reference.rows == 250                      # the training rows, not the 400 of the sample
