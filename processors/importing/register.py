"""One call from a model and a sample of its data to a registered serving version."""
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from flywheel.feature_store import FeatureStore
from flywheel.processors.importing import check, convert
from flywheel.processors.importing.check import Checked, Expected
from flywheel.processors.importing.errors import ImportRefused
from flywheel.processors.importing.sample import Sample, ordered_categories
from flywheel.processors.models import Manifest, ModelRegistry, OutputSpec
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.processors.retrainer.reference import store_reference
from flywheel.processors.training import Dataset
from flywheel.processors.worker.sessions import LoadedVersion
from flywheel.schemas.features import category_text

from flywheel.errors import open_user_file

TOLERANCE = 1e-3   # converted and original model may differ by float32 rounding, not more


@dataclass
class Imported:
    manifest: Manifest
    event: dict                # the REGISTERED ModelEvent
    checked: Checked           # how the model's answers on the sample were proven


@dataclass
class Prepared:
    """A model converted and checked, not yet registered."""
    manifest: Manifest
    onnx_bytes: bytes
    data: Dataset              # the sample's rows: the model's answers on them are profiled
    reference: Dataset         # the rows whose features are profiled: the reference rows, else the sample
    checked: Checked


def import_model(models: ModelRegistry, store: FeatureStore, model: str, version: str, sample,
                 estimator=None, onnx_file: str | Path | None = None, target: str | None = None,
                 labels: list[str] | None = None, regressor: bool | None = None, description: str = "",
                 categorical: tuple[str, ...] = (), expected: Expected = None,
                 tolerance: float = TOLERANCE, reference=None, numeric: tuple[str, ...] = ()) -> Imported:
    """Register `estimator` (a fitted scikit-learn model or pipeline) or `onnx_file` as `model`
    `version`. `sample` (CSV path, dict of columns or DataFrame) is data the model has seen or
    validated on: the feature spec and the drift reference come from it; `target` names its label
    column, left out of the features (and, for an ONNX file, the source of the class labels unless
    `labels` is given). `categorical` names number columns that are category codes, `numeric`
    columns of numbers written as text; `expected`
    (column names or a callable, see check.py) the answers an ONNX file must reproduce; `reference`
    (same forms) the rows it was trained on, whose features the drift reference profiles (default:
    the sample's)."""
    prepared = prepare(model, version, sample, estimator, onnx_file, target, labels, regressor, description,
                       categorical, expected, tolerance, reference, numeric)
    manifest = prepared.manifest
    event = models.register(prepared.onnx_bytes, manifest,
                            reason=f"imported {description or type(estimator).__name__}"
                            if estimator is not None else f"imported {Path(onnx_file).name}",
                            evidence=manifest.training_metrics)
    stored = models.manifest(model, version)
    # Features as trained on; the model's answers on rows it was not trained on (the sample).
    store_reference(store, stored, prepared.onnx_bytes, prepared.reference, prepared.data)
    return Imported(stored, event, prepared.checked)


def prepare(model: str, version: str, sample, estimator=None, onnx_file: str | Path | None = None,
            target: str | None = None, labels: list[str] | None = None, regressor: bool | None = None,
            description: str = "", categorical: tuple[str, ...] = (), expected: Expected = None,
            tolerance: float = TOLERANCE, reference=None, numeric: tuple[str, ...] = ()) -> Prepared:
    """Infer the spec, convert, and prove the converted model answers the sample as it should."""
    if (estimator is None) == (onnx_file is None):
        raise ImportRefused("give exactly one of a scikit-learn model or an ONNX file")
    if estimator is not None and expected is not None:
        raise ImportRefused("expected columns are for an ONNX file: a scikit-learn model is checked "
                            "against its own answers")
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise ImportRefused(f"declared both categorical and numeric: {', '.join(both)}")
    rows = Sample.of(sample).with_numeric(tuple(numeric))
    spec = rows.feature_spec(target, tuple(categorical), () if expected is None or callable(expected)
                             else tuple(expected))
    trained_on = Sample.of(reference).with_numeric(tuple(numeric)) if reference is not None else None
    if trained_on is not None:   # a category only the training rows have is one the model serves
        spec = rows.stacked(trained_on, convert.names(spec)).feature_spec(None, tuple(categorical))
    data = rows.dataset(spec, target)
    onnx_bytes, input_name, output = _convert(estimator, onnx_file, spec, rows, target, labels, regressor)
    manifest = Manifest(model, version, spec, output, input_name=input_name, description=description)
    answers = _serve(manifest, onnx_bytes, data)
    manifest = replace(manifest, training_metrics=_score(answers, manifest, rows, target))
    if estimator is not None:
        wanted = _original_answers(estimator, rows, spec, output.task == "classifier")
        checked = check.compare(answers, wanted, "the original model's answers", manifest, tolerance)
    else:
        given = check.expected_answers(expected, rows, manifest)
        checked = check.compare(answers, *given, manifest, tolerance) if given else Checked(0, 0.0, "nothing")
    # the proof stays with the version: `flywheel models show` prints it
    proof = {"checked_rows": float(checked.rows), "checked_largest_difference": checked.largest_difference}
    manifest = replace(manifest, training_metrics={**manifest.training_metrics, **proof})
    return Prepared(manifest, onnx_bytes, data, trained_on.dataset(spec, None) if trained_on else data, checked)


def _convert(estimator, onnx_file, spec, rows: Sample, target: str | None, labels: list[str] | None,
             regressor: bool | None) -> tuple[bytes, str, OutputSpec]:
    """The model in the worker's layout, the name of its input, and what it answers."""
    if estimator is not None:
        classifier = _is_classifier(estimator) if regressor is None else not regressor
        onnx_bytes = convert.from_sklearn(estimator, spec, classifier, rows.integer_coded(spec))
        input_name = convert.INPUT
        labels = [str(c) for c in estimator.classes_] if classifier else []
    else:
        onnx_bytes, input_name = convert.from_onnx(_read_bytes(onnx_file), spec)
        classifier = not regressor
        if classifier and not labels:
            if target is None:
                raise ImportRefused("an ONNX classifier needs its class labels: "
                                    "give labels or the sample's target column")
            # in scikit-learn's order of classes_: numbers by value (0, 1, 2, 10), text as text
            labels = list(ordered_categories([v for v in rows.columns[target] if v is not None]))
    output = OutputSpec("classifier", tuple(labels)) if classifier else OutputSpec("regressor")
    return onnx_bytes, input_name, output


def _serve(manifest: Manifest, onnx_bytes: bytes, data: Dataset) -> np.ndarray:
    """The converted model's answers on the sample, loaded and fed as the worker does."""
    matrix = MatrixLayout(manifest.features, manifest.categorical_encoding).build(data.numeric, data.categorical)
    try:
        answers = LoadedVersion(manifest, onnx_bytes).run(matrix)
    except Exception as e:  # onnxruntime raises its own types for a graph it cannot run
        raise ImportRefused(f"the converted model does not load or run as the worker runs it: {e}") from e
    if manifest.output.task == "classifier" and answers.shape[1] != len(manifest.output.labels):
        raise ImportRefused(f"the model answers {answers.shape[1]} probabilities for "
                            f"{len(manifest.output.labels)} labels ({', '.join(manifest.output.labels)})")
    return np.asarray(answers, dtype=float).reshape(len(data.numeric), -1)


def _original_answers(estimator, rows: Sample, spec, classifier: bool) -> np.ndarray:
    features = _features(estimator, rows, spec)
    if classifier:
        return np.asarray(estimator.predict_proba(features), dtype=float)
    return np.asarray(estimator.predict(features), dtype=float).reshape(-1, 1)


def _features(estimator, rows: Sample, spec):
    """The sample as the estimator takes it: a DataFrame if it was fitted on one, else a matrix."""
    if getattr(estimator, "feature_names_in_", None) is not None or spec.categorical:
        return rows.frame(spec)
    return np.array([[np.nan if v is None else float(v) for v in rows.columns[f.name]] for f in spec.numeric]).T


def _score(answers: np.ndarray, manifest: Manifest, rows: Sample, target: str | None) -> dict[str, float]:
    """The imported model's own figure on the sample (on training rows an optimistic one; said by its name)."""
    if target is None:
        return {}
    truth = rows.columns[target]
    if manifest.output.task == "classifier":
        predicted = [manifest.output.labels[i] for i in answers.argmax(axis=1)]
        return {"sample_accuracy": float(np.mean([p == category_text(t) for p, t in zip(predicted, truth)]))}
    return {"sample_mae": float(np.mean(np.abs(answers[:, 0] - np.asarray(truth, dtype=float))))}


def _is_classifier(estimator) -> bool:
    from sklearn.base import is_classifier
    return is_classifier(estimator)


def _read_bytes(path: str | Path) -> bytes:
    with open_user_file(path, "rb") as file:
        return file.read()
