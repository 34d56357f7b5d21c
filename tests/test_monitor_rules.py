"""Live performance against scikit-learn, and the data-quality rules firing on what they name."""
import numpy as np
import pytest
from flywheel.processors.monitor.performance import PerformanceCounts, performance
from flywheel.processors.monitor.profile import build_reference
from flywheel.processors.monitor.quality import VOLUME, QualityThresholds, check
from flywheel.schemas.features import Feature, FeatureSpec
from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_absolute_error, precision_score, recall_score


def test_classifier_figures_match_scikit_learn():
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    probs = rng.dirichlet([1, 1, 1], 300)
    pred = [classes[i] for i in probs.argmax(axis=1)]
    true = [p if rng.random() < 0.7 else rng.choice(classes) for p in pred]
    records = [{"true_label": t, "predicted_label": p, "scores": dict(zip(classes, pr)),
                "confidence": float(pr.max())} for t, p, pr in zip(true, pred, probs)]
    perf = performance(records)
    assert perf.kind == "classifier" and perf.count == 300 and perf.counts["log_loss"] == 300
    assert perf.metrics["accuracy"] == pytest.approx(accuracy_score(true, pred))
    assert perf.metrics["precision"] == pytest.approx(precision_score(true, pred, average="macro"))
    assert perf.metrics["recall"] == pytest.approx(recall_score(true, pred, average="macro"))
    assert perf.metrics["f1"] == pytest.approx(f1_score(true, pred, average="macro"))
    assert perf.metrics["log_loss"] == pytest.approx(log_loss(true, probs, labels=classes))


def _calibration_error(confidence: list[float], correct: list[int]) -> float:
    return performance([{"true_label": "a" if ok else "b", "predicted_label": "a", "confidence": c}
                        for c, ok in zip(confidence, correct)]).metrics["calibration_error"]


def test_calibration_error_is_zero_when_confidence_matches_accuracy():
    confidence = [0.75] * 8 + [0.95] * 20
    correct = [1] * 6 + [0] * 2 + [1] * 19 + [0]
    assert _calibration_error(confidence, correct) == pytest.approx(0.0)
    assert _calibration_error([0.9] * 10, [0] * 10) == pytest.approx(0.9)


def test_counts_of_parts_merged_give_the_figures_of_the_whole():
    rng = np.random.default_rng(2)
    records = [{"true_label": str(rng.integers(3)), "predicted_label": str(rng.integers(3)),
                "scores": {"0": float(rng.random())}, "confidence": float(rng.random())} for _ in range(200)]
    merged = PerformanceCounts()
    for k in range(0, 200, 30):
        part = PerformanceCounts()
        part.add(records[k:k + 30])
        merged.merge(part)
    whole = performance(records)
    assert merged.performance().counts == whole.counts
    assert merged.performance().metrics == pytest.approx(whole.metrics)
    assert whole.metrics["calibration_error"] > 0 and whole.counts["log_loss"] == 200


def test_regressor_figures():
    records = [{"true_value": t, "predicted_value": p} for t, p in [(1.0, 2.0), (2.0, 2.0), (3.0, 0.0)]]
    perf = performance(records)
    assert perf.kind == "regressor" and perf.count == 3
    assert perf.metrics["mae"] == pytest.approx(mean_absolute_error([1, 2, 3], [2, 2, 0]))
    assert perf.metrics["rmse"] == pytest.approx(np.sqrt(10 / 3))
    assert performance([{"true_label": None, "predicted_label": "x"}]) is None


def test_quality_rules_fire_on_missing_range_unseen_and_volume():
    spec = FeatureSpec((Feature("x", min=0, max=10), Feature("c", "categorical", categories=("a", "b"))))
    rng = np.random.default_rng(1)
    reference = build_reference(spec, {"x": rng.uniform(0, 10, 10_000)}, {"c": rng.choice(["a", "b"], 10_000)},
                                start_ms=0, end_ms=10_000_000)          # 1 record per second
    healthy = reference.empty_like(0, 100_000)
    healthy.add_columns(100, {"x": rng.uniform(0, 10, 100)}, {"c": rng.choice(["a", "b"], 100)})
    assert [q for q in check(reference, healthy, QualityThresholds()) if q.violated] == []

    sick = reference.empty_like(0, 1_000_000)                           # 1000 expected, 100 came
    x = np.concatenate([rng.uniform(0, 10, 80), [50.0] * 10, [np.nan] * 10])
    sick.add_columns(100, {"x": x}, {"c": ["a"] * 95 + ["zzz"] * 5})
    violated = {(q.feature, q.rule): q.value for q in check(reference, sick, QualityThresholds()) if q.violated}
    assert violated == {("x", "missing_rate"): 0.1, ("x", "out_of_range"): pytest.approx(10 / 90),
                        ("c", "unseen_category"): 0.05, (VOLUME, "volume"): 0.1}


def test_non_finite_regression_values_are_left_out_and_counted():
    """Issue 12, item 4: one NaN label turned a regressor's MAE and RMSE into NaN."""
    records = [{"true_value": t, "predicted_value": 1.0} for t in (0.0, 2.0, float("nan"), float("inf"))]
    result = performance(records)
    assert result.metrics == {"mae": 1.0, "rmse": 1.0} and result.count == 2
    assert result.counts["non_finite"] == 2
