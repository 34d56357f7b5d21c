"""From a version's raw output to Prediction records, with the checks on outputs: non-finite
values, probabilities that do not sum to 1, values outside the declared range, low confidence
or low margin. Checks are vectorised over the batch; flagged predictions also go to review."""
from dataclasses import dataclass

import numpy as np

from processors.worker.sessions import LoadedVersion


@dataclass
class Answers:
    labels: list[str | None]
    values: list[float | None]
    scores: list[dict[str, float]]
    confidence: list[float | None]
    flags: list[list[str]]


def interpret(version: LoadedVersion, out: np.ndarray) -> Answers:
    spec = version.manifest.output
    n = out.shape[0]
    finite = np.isfinite(out).all(axis=1)
    flagged: dict[str, np.ndarray] = {"non_finite_output": ~finite}
    if spec.task == "classifier":
        labels = spec.labels or tuple(str(i) for i in range(out.shape[1]))
        top = out.argmax(axis=1)
        confidence = out.max(axis=1)
        flagged["probabilities_not_normalised"] = finite & (np.abs(out.sum(axis=1) - 1.0) > spec.probability_tolerance)
        if spec.low_confidence > 0:
            flagged["low_confidence"] = finite & (confidence < spec.low_confidence)
        if spec.low_margin > 0 and out.shape[1] > 1:
            two = np.sort(out, axis=1)[:, -2:]
            flagged["low_margin"] = finite & (two[:, 1] - two[:, 0] < spec.low_margin)
        label_of = [labels[i] for i in top.tolist()]
        conf = confidence.astype(np.float64).tolist()
        rows = out.astype(np.float64).tolist()
        scores = [dict(zip(labels, r)) for r in rows]
        answers = Answers([lab if ok else None for lab, ok in zip(label_of, finite.tolist())], [None] * n, scores,
                          [c if ok else None for c, ok in zip(conf, finite.tolist())], [])
    else:
        value = out[:, 0].astype(np.float64)
        outside = np.zeros(n, dtype=bool)
        if spec.min is not None:
            outside |= value < spec.min
        if spec.max is not None:
            outside |= value > spec.max
        flagged["out_of_range"] = finite & outside
        answers = Answers([None] * n, [v if ok else None for v, ok in zip(value.tolist(), finite.tolist())],
                          [{} for _ in range(n)], [None] * n, [])
    answers.flags = _flags(flagged, n)
    return answers


def _flags(flagged: dict[str, np.ndarray], n: int) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(n)]
    for name, mask in flagged.items():
        for i in np.flatnonzero(mask).tolist():
            out[i].append(name)
    return out
