"""One call from a model and a sample of its data to a registered serving version."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flywheel.feature_store import FeatureStore
from flywheel.processors.importing import convert
from flywheel.processors.importing.errors import ImportRefused
from flywheel.processors.importing.sample import Sample
from flywheel.processors.models import Manifest, ModelRegistry, OutputSpec
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.processors.retrainer.reference import store_reference
from flywheel.processors.worker.sessions import LoadedVersion

from flywheel.errors import open_user_file

TOLERANCE = 1e-3   # converted and original model may differ by float32 rounding, not more


@dataclass
class Imported:
    manifest: Manifest
    event: dict                # the REGISTERED ModelEvent
    checked_rows: int          # sample rows the converted model answered like the original
    largest_difference: float  # over those rows, in probability (classifiers) or value


def import_model(models: ModelRegistry, store: FeatureStore, model: str, version: str, sample,
                 estimator=None, onnx_file: str | Path | None = None, target: str | None = None,
                 labels: list[str] | None = None, regressor: bool | None = None, description: str = "") -> Imported:
    """Register `estimator` (a fitted scikit-learn model or pipeline) or `onnx_file` as `model`
    `version`. `sample` (CSV path, dict of columns or DataFrame) is training data: the feature
    spec and the drift reference come from it; `target` names its label column, left out of the
    features (and, for an ONNX file, the source of the class labels unless `labels` is given)."""
    if (estimator is None) == (onnx_file is None):
        raise ImportRefused("give exactly one of a scikit-learn model or an ONNX file")
    rows = Sample.of(sample)
    spec = rows.feature_spec(target)
    data = rows.dataset(spec, target)
    if estimator is not None:
        classifier = _is_classifier(estimator) if regressor is None else not regressor
        onnx_bytes, input_name = convert.from_sklearn(estimator, spec, classifier), convert.INPUT
        labels = [str(c) for c in estimator.classes_] if classifier else []
    else:
        onnx_bytes, input_name = convert.from_onnx(_read_bytes(onnx_file), spec)
        classifier = not regressor
        if classifier and not labels:
            if target is None:
                raise ImportRefused("an ONNX classifier needs its class labels: "
                                    "give labels or the sample's target column")
            labels = sorted({str(v) for v in rows.columns[target] if v is not None})
    output = OutputSpec("classifier", tuple(labels)) if classifier else OutputSpec("regressor")
    manifest = Manifest(model, version, spec, output, input_name=input_name, description=description,
                        training_metrics=_score(estimator, rows, spec, target, classifier) if estimator else {})
    checked, difference = _test_load(manifest, onnx_bytes, data, estimator, rows, spec)
    event = models.register(onnx_bytes, manifest, reason=f"imported {description or type(estimator).__name__}"
                            if estimator is not None else f"imported {Path(onnx_file).name}",
                            evidence=manifest.training_metrics)
    stored = models.manifest(model, version)
    # The sample is all we know of what the version serves: its features and the model's answers on it.
    store_reference(store, stored, onnx_bytes, data, data)
    return Imported(stored, event, checked, difference)


def _test_load(manifest: Manifest, onnx_bytes: bytes, data, estimator, rows: Sample, spec) -> tuple[int, float]:
    """Load the converted model as the worker will and answer the sample; with the original model
    at hand, the answers must agree with its own."""
    matrix = MatrixLayout(manifest.features, manifest.categorical_encoding).build(data.numeric, data.categorical)
    try:
        answers = LoadedVersion(manifest, onnx_bytes).run(matrix)
    except Exception as e:  # onnxruntime raises its own types for a graph it cannot run
        raise ImportRefused(f"the converted model does not load or run as the worker runs it: {e}") from e
    if manifest.output.task == "classifier" and answers.shape[1] != len(manifest.output.labels):
        raise ImportRefused(f"the model answers {answers.shape[1]} probabilities for "
                            f"{len(manifest.output.labels)} labels ({', '.join(manifest.output.labels)})")
    if estimator is None:
        return 0, 0.0
    features = _features(estimator, rows, spec)
    expected = estimator.predict_proba(features) if manifest.output.task == "classifier" \
        else np.asarray(estimator.predict(features), dtype=float).reshape(-1, 1)
    difference = float(np.max(np.abs(np.asarray(answers, dtype=float) - expected))) if len(expected) else 0.0
    if difference > TOLERANCE:
        raise ImportRefused(f"the converted model answers the sample differently from the original "
                            f"(by up to {difference:.3g}): is the sample the data it was trained on?")
    return len(expected), difference


def _features(estimator, rows: Sample, spec):
    """The sample as the estimator takes it: a DataFrame if it was fitted on one, else a matrix."""
    if getattr(estimator, "feature_names_in_", None) is not None or spec.categorical:
        return rows.frame(spec)
    return np.array([[np.nan if v is None else float(v) for v in rows.columns[f.name]] for f in spec.numeric]).T


def _score(estimator, rows: Sample, spec, target: str | None, classifier: bool) -> dict[str, float]:
    """The model's own figure on the sample (training data: an optimistic one, said by its name)."""
    if target is None:
        return {}
    truth = rows.columns[target]
    predicted = estimator.predict(_features(estimator, rows, spec))
    if classifier:
        return {"sample_accuracy": float(np.mean([str(p) == str(t) for p, t in zip(predicted, truth)]))}
    return {"sample_mae": float(np.mean(np.abs(np.asarray(predicted, dtype=float) - np.asarray(truth, dtype=float))))}


def _is_classifier(estimator) -> bool:
    from sklearn.base import is_classifier
    return is_classifier(estimator)


def _read_bytes(path: str | Path) -> bytes:
    with open_user_file(path, "rb") as file:
        return file.read()
