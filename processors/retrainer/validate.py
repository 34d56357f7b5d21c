"""Candidate against incumbent on the same held-out, most recent feedback.

The primary metric is accuracy for classifiers and RMSE for regressors; the candidate is
accepted only if it beats the incumbent by `min_improvement` (absolute, in the metric's units).
"""
from dataclasses import dataclass

import numpy as np
from flywheel.processors.models import Manifest, MatrixLayout
from flywheel.processors.training import Dataset
from flywheel.processors.worker.sessions import LoadedVersion


@dataclass(frozen=True)
class Validation:
    metric: str
    candidate: float
    incumbent: float
    rows: int
    accepted: bool
    reason: str

    @property
    def evidence(self) -> dict[str, float]:
        return {f"candidate_{self.metric}": self.candidate, f"incumbent_{self.metric}": self.incumbent,
                "holdout_rows": float(self.rows)}


def primary_metric(manifest: Manifest) -> str:
    return "accuracy" if manifest.output.task == "classifier" else "rmse"


def outputs(manifest: Manifest, onnx_bytes: bytes, data: Dataset) -> np.ndarray:
    """The version's raw outputs on a dataset: class probabilities, or values in one column."""
    x = MatrixLayout(data.spec, manifest.categorical_encoding).build(data.numeric, data.categorical)
    return LoadedVersion(manifest, onnx_bytes).run(x)


def score(manifest: Manifest, onnx_bytes: bytes, data: Dataset) -> float:
    out = outputs(manifest, onnx_bytes, data)
    if manifest.output.task == "classifier":
        labels = np.asarray(manifest.output.labels)[np.argmax(out, axis=1)]
        return float(np.mean(labels == data.target))
    return float(np.sqrt(np.mean((out[:, 0] - data.target.astype(np.float64)) ** 2)))


def compare(candidate: Manifest, candidate_onnx: bytes, incumbent: Manifest, incumbent_onnx: bytes,
            holdout: Dataset, min_improvement: float) -> Validation:
    metric = primary_metric(incumbent)
    new, old = score(candidate, candidate_onnx, holdout), score(incumbent, incumbent_onnx, holdout)
    gain = new - old if metric == "accuracy" else old - new
    accepted = gain >= min_improvement
    verdict = "beats" if accepted else "does not beat"
    reason = (f"candidate {metric} {new:.4f} {verdict} incumbent {old:.4f} by the required "
              f"{min_improvement:g} on {len(holdout)} held-out rows")
    return Validation(metric, new, old, len(holdout), accepted, reason)
