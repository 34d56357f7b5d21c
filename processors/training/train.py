"""Train a reference model with scikit-learn and convert it to ONNX with skl2onnx.

Data in (numpy + FeatureSpec), ONNX bytes + Manifest out: the retrainer and the demo call
`train()` and hand the result to `ModelRegistry.register`.
"""
from dataclasses import dataclass

import numpy as np
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.processors.models.manifest import Manifest, OutputSpec
from flywheel.schemas.features import FeatureSpec
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor

REVIEW_SHARE = 0.01     # of a version's validation answers below its low-confidence line


def review_line(confidence: np.ndarray, share: float = REVIEW_SHARE) -> float:
    """The confidence below which `share` of a version's validation answers fall: its low-confidence
    line, so review starts at what is rare for this version rather than at a fixed number."""
    return float(np.quantile(confidence, share)) if len(confidence) else 0.0


@dataclass
class TrainedModel:
    onnx_bytes: bytes
    manifest: Manifest
    estimator: object


def build_estimator(kind: str, task: str, seed: int = 0, hidden: tuple[int, ...] = (64, 32),
                    n_estimators: int = 100, max_depth: int = 6, max_iter: int = 60):
    if kind == "mlp":
        cls = MLPClassifier if task == "classifier" else MLPRegressor
        return cls(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=seed, early_stopping=True)
    if kind == "gbt":
        cls = GradientBoostingClassifier if task == "classifier" else GradientBoostingRegressor
        return cls(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, subsample=0.8)
    raise ValueError(f"model kind must be mlp or gbt, not {kind!r}")


def train(model: str, version: str, numeric: np.ndarray, target: np.ndarray, spec: FeatureSpec,
          categorical: list[list[str]] | None = None, kind: str = "mlp", task: str = "classifier",
          holdout: float = 0.2, seed: int = 0, low_confidence: float | None = None, review_share: float = REVIEW_SHARE,
          **estimator_args) -> TrainedModel:
    """`low_confidence` None: the review line of the validation (holdout) answers at `review_share`
    (0, no low-confidence flag, without a holdout)."""
    layout = MatrixLayout(spec)
    x = layout.build(numeric, categorical)
    n_train = int(len(x) * (1 - holdout))
    estimator = build_estimator(kind, task, seed, **estimator_args)
    estimator.fit(x[:n_train], target[:n_train])
    metrics = _score(estimator, task, x[n_train:], target[n_train:]) if n_train < len(x) else {}
    onx = convert_sklearn(estimator, initial_types=[("input", FloatTensorType([None, layout.width]))],
                          options={id(estimator): {"zipmap": False}} if task == "classifier" else None,
                          target_opset=17)
    if task == "classifier":
        if low_confidence is None:
            low_confidence = (review_line(estimator.predict_proba(x[n_train:]).max(axis=1), review_share)
                              if n_train < len(x) else 0.0)
        output = OutputSpec("classifier", labels=tuple(str(c) for c in estimator.classes_),
                            low_confidence=low_confidence)
    else:
        output = OutputSpec("regressor", min=float(np.min(target)) - 3 * float(np.std(target)),
                            max=float(np.max(target)) + 3 * float(np.std(target)))
    manifest = Manifest(model=model, version=version, features=spec, output=output,
                        training_metrics={**metrics, "rows": float(n_train)},
                        description=f"{kind} {task} trained on {n_train} rows")
    return TrainedModel(onx.SerializeToString(), manifest, estimator)


def _score(estimator, task: str, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if task == "classifier":
        return {"accuracy": float(np.mean(estimator.predict(x) == y))}
    err = estimator.predict(x) - y
    return {"rmse": float(np.sqrt(np.mean(err ** 2)))}
