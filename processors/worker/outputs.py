"""From a version's raw output to answers, with the checks on outputs: non-finite values,
probabilities that do not sum to 1, values outside the declared range, low confidence or low
margin. Everything is computed for the whole batch at once; flagged predictions go to review."""
from dataclasses import dataclass

import numpy as np

from processors.worker.sessions import LoadedVersion


@dataclass
class Answers:
    classifier: bool
    labels: tuple[str, ...]
    output: np.ndarray            # (n, classes) probabilities or (n, 1) values, float64
    top: list[int]
    confidence: np.ndarray
    finite: list[bool]
    flags: list[list[str]]

    def label(self, k: int) -> str | None:
        return self.labels[self.top[k]] if self.classifier and self.finite[k] else None

    def value(self, k: int) -> float | None:
        return None if self.classifier or not self.finite[k] else float(self.output[k, 0])

    def scores(self, k: int) -> dict[str, float]:
        return dict(zip(self.labels, self.output[k].tolist())) if self.classifier else {}

    def flagged(self) -> list[int]:
        return [k for k, f in enumerate(self.flags) if f]

    def confidence_of(self, k: int) -> float | None:
        return float(self.confidence[k]) if self.classifier and self.finite[k] else None


def interpret(version: LoadedVersion, out: np.ndarray) -> Answers:
    spec = version.manifest.output
    n = out.shape[0]
    out = out.astype(np.float64)
    finite = np.isfinite(out).all(axis=1)
    flagged: dict[str, np.ndarray] = {"non_finite_output": ~finite}
    classifier = spec.task == "classifier"
    if classifier:
        labels = spec.labels or tuple(str(i) for i in range(out.shape[1]))
        top = out.argmax(axis=1)
        confidence = out.max(axis=1)
        flagged["probabilities_not_normalised"] = finite & (np.abs(out.sum(axis=1) - 1.0) > spec.probability_tolerance)
        if spec.low_confidence > 0:
            flagged["low_confidence"] = finite & (confidence < spec.low_confidence)
        if spec.low_margin > 0 and out.shape[1] > 1:
            two = np.sort(out, axis=1)[:, -2:]
            flagged["low_margin"] = finite & (two[:, 1] - two[:, 0] < spec.low_margin)
    else:
        labels = ()
        top = np.zeros(n, dtype=np.int64)
        confidence = np.zeros(n)
        value = out[:, 0]
        outside = np.zeros(n, dtype=bool)
        if spec.min is not None:
            outside |= value < spec.min
        if spec.max is not None:
            outside |= value > spec.max
        flagged["out_of_range"] = finite & outside
    return Answers(classifier, labels, out, top.tolist(), confidence, finite.tolist(), _flags(flagged, n))


def _flags(flagged: dict[str, np.ndarray], n: int) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(n)]
    for name, mask in flagged.items():
        for i in np.flatnonzero(mask).tolist():
            out[i].append(name)
    return out
