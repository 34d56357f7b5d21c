"""Live performance of a model version from joined feedback (FeedbackRecord dicts).

Classifiers: accuracy, macro precision, recall and F1, log loss (over records that carry class
scores) and expected calibration error (10 confidence bins). Regressors: MAE and RMSE. Every
figure comes with the number of labelled examples behind it.
"""
import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

CALIBRATION_BINS = 10
LOG_LOSS_FLOOR = 1e-15


@dataclass
class Performance:
    kind: str                                   # classifier | regressor
    count: int                                  # labelled examples
    metrics: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # examples behind each metric


def performance(records: list[dict]) -> Performance | None:
    """Score the labelled records; classifiers and regressors are told apart by the label kind.
    A non-finite value (the joiner refuses them; this is defence in depth) is left out and counted
    (`counts["non_finite"]`) instead of turning MAE and RMSE into NaN."""
    classified = [r for r in records if r.get("true_label") is not None and r.get("predicted_label") is not None]
    regressed = [r for r in records if r.get("true_value") is not None and r.get("predicted_value") is not None]
    if classified:
        return classifier_performance(classified)
    finite = [r for r in regressed if math.isfinite(r["true_value"]) and math.isfinite(r["predicted_value"])]
    if finite:
        result = regressor_performance(finite)
        if len(finite) < len(regressed):
            result.counts["non_finite"] = len(regressed) - len(finite)
        return result
    return None


def classifier_performance(records: list[dict]) -> Performance:
    true = [r["true_label"] for r in records]
    pred = [r["predicted_label"] for r in records]
    correct = np.array([t == p for t, p in zip(true, pred)])
    precision, recall, f1, _ = precision_recall_fscore_support(true, pred, average="macro", zero_division=0)
    n = len(records)
    result = Performance("classifier", n, {"accuracy": float(correct.mean()), "precision": float(precision),
                                           "recall": float(recall), "f1": float(f1)},
                         dict.fromkeys(("accuracy", "precision", "recall", "f1"), n))
    scored = [r for r in records if r.get("scores")]
    if scored:
        result.metrics["log_loss"] = log_loss(scored)
        result.counts["log_loss"] = len(scored)
    confident = [(c, ok) for c, ok in zip((confidence_of(r) for r in records), correct) if c is not None]
    if confident:
        result.metrics["calibration_error"] = calibration_error(*map(np.array, zip(*confident)))
        result.counts["calibration_error"] = len(confident)
    return result


def regressor_performance(records: list[dict]) -> Performance:
    errors = np.array([r["predicted_value"] - r["true_value"] for r in records], dtype=float)
    n = len(records)
    return Performance("regressor", n, {"mae": float(np.abs(errors).mean()),
                                        "rmse": float(math.sqrt(np.mean(errors ** 2)))},
                       {"mae": n, "rmse": n})


def log_loss(records: list[dict]) -> float:
    """Mean negative log of the score given to the true class (0 when the class had no score)."""
    probs = np.array([r["scores"].get(r["true_label"], 0.0) for r in records], dtype=float)
    return float(-np.mean(np.log(np.clip(probs, LOG_LOSS_FLOOR, 1.0))))


def calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Expected calibration error: |accuracy - mean confidence| per bin, weighted by bin size."""
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(confidence))


def confidence_of(record: dict) -> float | None:
    if record.get("confidence") is not None:
        return float(record["confidence"])
    scores = record.get("scores") or {}
    return scores.get(record.get("predicted_label")) if scores else None
