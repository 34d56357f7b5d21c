"""Backtest: a candidate version's metrics on historical requests equal the same metrics
computed directly from the feedback store's rows (and an independent ONNX Runtime run)."""
import json

import numpy as np
import onnxruntime as ort
import pytest
from flywheel.feature_store import FeedbackRecord, StoreSettings, open_store
from flywheel.processors.backtest import Backtest, BacktestPlan
from flywheel.processors.models import MatrixLayout, ModelRegistry
from flywheel.processors.training.data import synthetic
from flywheel.processors.training.train import train
from sklearn.metrics import accuracy_score, f1_score

from flywheel.cli import main

T0 = 1_700_000_000_000
START, END = T0 + 1_000, T0 + 200_000


@pytest.fixture
def history(kafka, registry, make_topics, data_dir):
    """A live v1 and a candidate v2 in the registry; v1's served answers with ground truth in the
    store, plus rows the backtest must leave out (replayed, unlabelled, outside the range)."""
    make_topics("m")
    data = synthetic(700, n_numeric=4, categories={"region": ("north", "south", "east")}, seed=3)
    models = ModelRegistry(kafka, registry, data_dir)
    v1 = train("m", "v1", data.numeric[:200], data.target[:200], data.spec, [c[:200] for c in data.categorical],
               kind="gbt", holdout=0.0, n_estimators=5, max_depth=2)
    v2 = train("m", "v2", data.numeric[:400], data.target[:400], data.spec, [c[:400] for c in data.categorical],
               kind="gbt", holdout=0.0, n_estimators=30, max_depth=3)
    models.register(v1.onnx_bytes, v1.manifest)
    models.register(v2.onnx_bytes, v2.manifest)
    layout = MatrixLayout(data.spec)
    rows = data.rows(400, 700)
    served = v1.estimator.predict(layout.build(data.numeric[400:], [c[400:] for c in data.categorical]))
    store = open_store(StoreSettings(), data_dir)
    records = []
    for i, (row, label) in enumerate(zip(rows, served)):
        numeric = {k: v for k, v in row.items() if not isinstance(v, str)}
        flags = ["replay"] if i % 30 == 0 else []
        event_time = T0 + 2_000 + i * 500 if i < 290 else END + i  # the last 10 are outside the range
        records.append(FeedbackRecord(
            request_id=f"r{i}", entity_id=f"e{i}", model="m", model_version="v1", event_time=event_time,
            predicted_at=event_time + 5 + i % 7, labelled_at=event_time + 60_000, numeric=numeric,
            categorical={"region": row["region"]}, predicted_label=str(label),
            true_label=None if i % 50 == 7 else str(data.target[400 + i]), flags=flags))
    store.put_feedback(records)
    yield store, models, v2
    store.close()
    models.close()


def test_backtest_metrics_equal_those_computed_from_the_store(history, registry):
    store, models, v2 = history
    report = Backtest(store, models, registry).run(BacktestPlan("m", "v2", START, END))

    # Directly from the store: the rows of v1 in range, not replayed, labelled.
    rows = [r for r in store.feedback("m", START, END, version="v1") if "replay" not in r.flags and r.true_label]
    truth = [r.true_label for r in rows]
    served = [r.predicted_label for r in rows]
    session = ort.InferenceSession(v2.onnx_bytes, providers=["CPUExecutionProvider"])
    layout = MatrixLayout(v2.manifest.features)
    x = layout.build(np.array([[r.numeric[f"f{k:02d}"] for k in range(4)] for r in rows], dtype=np.float32),
                     [[r.categorical["region"] for r in rows]])
    probabilities = session.run(["probabilities"], {"input": x})[0]
    candidate = [v2.manifest.output.labels[k] for k in probabilities.argmax(axis=1)]

    assert report.requests == len(rows) == 290 - 10 - 6
    assert report.skipped == {"replayed": 10, "no_ground_truth": 6}
    assert report.baseline == "v1" and report.primary_metric == "accuracy"
    assert report.baseline_metrics["accuracy"] == pytest.approx(accuracy_score(truth, served))
    assert report.candidate_metrics["accuracy"] == pytest.approx(accuracy_score(truth, candidate))
    assert report.candidate_metrics["f1"] == pytest.approx(f1_score(truth, candidate, average="macro"))
    assert report.agreement == pytest.approx(np.mean(np.array(served) == np.array(candidate)))
    by_slice = {s.name: s for s in report.slices}
    for region in ("north", "south", "east"):
        idx = [i for i, r in enumerate(rows) if r.categorical["region"] == region]
        s = by_slice[f"region={region}"]
        assert s.count == len(idx)
        assert s.baseline == pytest.approx(accuracy_score([truth[i] for i in idx], [served[i] for i in idx]))
        assert s.candidate == pytest.approx(accuracy_score([truth[i] for i in idx], [candidate[i] for i in idx]))
    assert set(report.latency) == {"candidate", "baseline", "production"}
    production = np.array([r.predicted_at - r.event_time for r in rows], dtype=float)
    assert report.latency["production"].p50_ms == pytest.approx(np.percentile(production, 50))


def test_cli_backtest_prints_the_report_as_json(history, kafka, data_dir, capsys, tmp_path):
    output = tmp_path / "report.json"
    code = main(["--bootstrap", kafka.bootstrap_servers, "--topic-prefix", kafka.topic_prefix,
                 "--data-dir", str(data_dir), "replay", "backtest", "-m", "m", "--candidate", "v2",
                 "--from", str(START), "--to", str(END), "--json", "--output", str(output)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(output.read_text())
    assert printed["requests"] == 274 and printed["better"] in ("candidate", "baseline", "tie")
    assert {s["name"] for s in printed["slices"]} >= {"region=north", "region=south", "region=east"}
