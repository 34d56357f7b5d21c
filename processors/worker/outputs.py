"""From a version's raw output to answers, with the checks on outputs: non-finite values,
probabilities that do not sum to 1, values outside the declared range, low confidence or low
margin. Everything is computed for the whole batch at once; flagged predictions go to review.

Review is a person's time, so low confidence and low margin (judgement calls, not faults) are
rationed per model by a `ReviewBudget`: a share of the model's predictions, the least confident
first, unspent share carried over up to a burst. What does not fit is counted, never hidden (the
prediction keeps its flags; the worker counts it in `flywheel_review_dropped_total`). Faults
(non-finite output, probabilities that do not sum to 1, values out of range) always go."""
from dataclasses import dataclass, field

import numpy as np
from flywheel.processors.worker.sessions import LoadedVersion


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


RATIONED = frozenset({"low_confidence", "low_margin"})


@dataclass
class ReviewSelection:
    items: list[int]                                       # answers to send to review, in batch order
    dropped: dict[str, int] = field(default_factory=dict)  # flagged but over the budget, per reason


@dataclass
class ReviewBudget:
    """How many of one model's low-confidence answers a reviewer gets: `share` of its predictions."""
    share: float
    burst: float = 100.0        # unspent items carried over at most (a quiet hour does not bank a flood)
    tokens: float = 0.0

    def select(self, answers: Answers) -> ReviewSelection:
        flagged = answers.flagged()
        faults = [k for k in flagged if not RATIONED.issuperset(answers.flags[k])]
        judgement = sorted((k for k in flagged if RATIONED.issuperset(answers.flags[k])),
                           key=lambda k: answers.confidence[k])
        self.tokens = min(self.burst, self.tokens + self.share * len(answers.flags))
        taken = min(len(judgement), int(self.tokens))
        self.tokens -= taken
        dropped: dict[str, int] = {}
        for k in judgement[taken:]:
            for reason in answers.flags[k]:
                dropped[reason] = dropped.get(reason, 0) + 1
        return ReviewSelection(sorted(faults + judgement[:taken]), dropped)


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
