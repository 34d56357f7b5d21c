"""Live performance of a model version from joined feedback (FeedbackRecord dicts).

Classifiers: accuracy, macro precision, recall and F1, log loss (over records that carry class
scores) and expected calibration error (10 confidence bins). Regressors: MAE and RMSE. Every
figure comes with the number of labelled examples behind it, and is computed from additive counts
(`PerformanceCounts`), so figures over many buckets of records need the buckets' counts only.
"""
import math
from collections import Counter
from dataclasses import dataclass, field

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
    counts = PerformanceCounts()
    counts.add(records)
    return counts.performance()


@dataclass
class PerformanceCounts:
    """The sums every figure is computed from. They add up: the counts of two sets of records,
    merged, are the counts of both, so a running figure can be kept in time buckets of these
    (the retrain trigger does) instead of in records."""
    confusion: Counter = field(default_factory=Counter)     # (true label, predicted label) -> examples
    scored: int = 0                                         # classified examples with class scores
    log_loss_sum: float = 0.0
    # confidence bin -> [examples, sum of confidence, correct examples]
    calibration: dict[int, list[float]] = field(default_factory=dict)
    regressed: int = 0                                      # finite regressed examples
    abs_error_sum: float = 0.0
    squared_error_sum: float = 0.0
    non_finite: int = 0

    def add(self, records: list[dict]) -> None:
        for r in records:
            if r.get("true_label") is not None and r.get("predicted_label") is not None:
                self._classified(r)
            elif r.get("true_value") is not None and r.get("predicted_value") is not None:
                self._regressed(r["predicted_value"], r["true_value"])

    def merge(self, other: "PerformanceCounts") -> None:
        self.confusion.update(other.confusion)
        self.scored += other.scored
        self.log_loss_sum += other.log_loss_sum
        for b, (n, confidence, correct) in other.calibration.items():
            mine = self.calibration.setdefault(b, [0, 0.0, 0])
            mine[0], mine[1], mine[2] = mine[0] + n, mine[1] + confidence, mine[2] + correct
        self.regressed += other.regressed
        self.abs_error_sum += other.abs_error_sum
        self.squared_error_sum += other.squared_error_sum
        self.non_finite += other.non_finite

    def to_dict(self) -> dict:
        """JSON-ready: the confusion's (true, predicted) keys and the bins as lists."""
        return {"confusion": [[t, p, n] for (t, p), n in self.confusion.items()], "scored": self.scored,
                "log_loss_sum": self.log_loss_sum, "calibration": [[b, *s] for b, s in self.calibration.items()],
                "regressed": self.regressed, "abs_error_sum": self.abs_error_sum,
                "squared_error_sum": self.squared_error_sum, "non_finite": self.non_finite}

    @staticmethod
    def from_dict(data: dict) -> "PerformanceCounts":
        sums = {k: v for k, v in data.items() if k not in ("confusion", "calibration")}
        return PerformanceCounts(Counter({(t, p): n for t, p, n in data.get("confusion", [])}),
                                 calibration={b: list(s) for b, *s in data.get("calibration", [])}, **sums)

    def performance(self) -> Performance | None:
        """Classifier figures if any example was classified, else regressor figures, else None."""
        if self.confusion:
            return self._classifier()
        if self.regressed:
            return self._regressor()
        return None

    def _classified(self, r: dict) -> None:
        true, predicted = r["true_label"], r["predicted_label"]
        self.confusion[(true, predicted)] += 1
        if r.get("scores"):
            self.scored += 1
            self.log_loss_sum -= math.log(min(1.0, max(LOG_LOSS_FLOOR, r["scores"].get(true, 0.0))))
        confidence = confidence_of(r)
        if confidence is not None and math.isfinite(confidence):    # a NaN has no bin
            b = min(int(confidence * CALIBRATION_BINS), CALIBRATION_BINS - 1)
            sums = self.calibration.setdefault(b, [0, 0.0, 0])
            sums[0], sums[1], sums[2] = sums[0] + 1, sums[1] + confidence, sums[2] + (true == predicted)

    def _regressed(self, predicted: float, true: float) -> None:
        if not (math.isfinite(true) and math.isfinite(predicted)):
            self.non_finite += 1
            return
        e = predicted - true
        self.regressed += 1
        self.abs_error_sum += abs(e)
        self.squared_error_sum += e * e

    def _classifier(self) -> Performance:
        n = sum(self.confusion.values())
        right = sum(k for (t, p), k in self.confusion.items() if t == p)
        precision, recall, f1 = macro_scores(self.confusion)
        result = Performance("classifier", n, {"accuracy": right / n, "precision": precision,
                                               "recall": recall, "f1": f1},
                             dict.fromkeys(("accuracy", "precision", "recall", "f1"), n))
        if self.scored:
            result.metrics["log_loss"] = self.log_loss_sum / self.scored
            result.counts["log_loss"] = self.scored
        confident = sum(n for n, _, _ in self.calibration.values())
        if confident:
            gaps = sum(abs(correct - confidence) for _, confidence, correct in self.calibration.values())
            result.metrics["calibration_error"] = gaps / confident
            result.counts["calibration_error"] = confident
        return result

    def _regressor(self) -> Performance:
        n = self.regressed
        result = Performance("regressor", n, {"mae": self.abs_error_sum / n,
                                              "rmse": math.sqrt(self.squared_error_sum / n)},
                             {"mae": n, "rmse": n})
        if self.non_finite:
            result.counts["non_finite"] = self.non_finite
        return result


def macro_scores(confusion: Counter) -> tuple[float, float, float]:
    """Macro precision, recall and F1 over the labels true or predicted, a label with nothing to
    divide by scoring 0 (scikit-learn's precision_recall_fscore_support, average="macro",
    zero_division=0)."""
    tp, predicted, true = Counter(), Counter(), Counter()
    for (t, p), k in confusion.items():
        true[t] += k
        predicted[p] += k
        if t == p:
            tp[t] += k
    labels = set(true) | set(predicted)
    precision = sum(tp[c] / predicted[c] for c in labels if predicted[c]) / len(labels)
    recall = sum(tp[c] / true[c] for c in labels if true[c]) / len(labels)
    f1 = sum(2 * tp[c] / (true[c] + predicted[c]) for c in labels) / len(labels)
    return precision, recall, f1


def confidence_of(record: dict) -> float | None:
    if record.get("confidence") is not None:
        return float(record["confidence"])
    scores = record.get("scores") or {}
    return scores.get(record.get("predicted_label")) if scores else None
