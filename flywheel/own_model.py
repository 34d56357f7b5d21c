"""Bring your own model, from Python: `register_own_model("tumour", "v1", sample=df,
estimator=pipeline, target="target")` registers a fitted scikit-learn model or pipeline (or an
ONNX file) as a serving version of a model, against the stack the configuration names. What it
does is processors/importing's `import_model`; this opens and closes what that needs."""
from pathlib import Path

from flywheel.config import Config, load_config
from flywheel.processors.importing import Imported, import_model
from flywheel.processors.importing.check import Expected
from flywheel.processors.models import ModelRegistry
from flywheel.wiring import ensure_core_topics, feature_store_for, schema_registry


def register_own_model(model: str, version: str, sample, estimator=None, onnx_file: str | Path | None = None,
                       target: str | None = None, labels: list[str] | None = None, regressor: bool | None = None,
                       description: str = "", categorical: tuple[str, ...] = (), expected: Expected = None,
                       reference=None, numeric: tuple[str, ...] = (),
                       config: Config | None = None) -> Imported:
    """Register a serving version; `sample` is data the model was validated on (CSV path, dict of
    columns or DataFrame) with the label column `target`; `categorical` names number columns that
    are category codes, `numeric` columns of numbers written as text; `expected` the sample's
    columns of an ONNX file's known answers (or a callable that computes them); `reference` the rows
    it was trained on, which the drift reference profiles (default: the sample). Raises
    ImportRefused saying why a model cannot serve."""
    config = config or load_config()
    ensure_core_topics(config, [model])
    models = ModelRegistry(config.kafka, schema_registry(config), config.data_dir, actor="import")
    try:
        with feature_store_for(config) as store:
            return import_model(models, store, model, version, sample, estimator=estimator, onnx_file=onnx_file,
                                target=target, labels=labels, regressor=regressor, description=description,
                                categorical=tuple(categorical), expected=expected, reference=reference,
                                numeric=tuple(numeric))
    finally:
        models.close()
