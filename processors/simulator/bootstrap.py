"""The demo's first model: trained on the concept before any drift, registered (so it serves at
once) with its reference profile. Nothing happens if the model already exists."""
import numpy as np
from flywheel.feature_store import FeatureStore
from flywheel.processors.models import ModelRegistry
from flywheel.processors.retrainer.reference import store_reference
from flywheel.processors.simulator.concept import Concept
from flywheel.processors.training import train


def ensure_model(models: ModelRegistry, store: FeatureStore, model: str, concept: Concept,
                 rows: int = 20_000, seed: int = 0) -> str | None:
    """Register version v1 of `model` if the registry has never seen it; return it, else None."""
    if model in models.deployments() or model in models.history.last():
        return None
    data = concept.sample(rows, np.random.default_rng(seed))
    trained = train(model, "v1", data.numeric, data.target, data.spec, data.categorical,
                    kind="mlp")
    models.register(trained.onnx_bytes, trained.manifest, reason="demo bootstrap",
                    evidence=trained.manifest.training_metrics)
    store_reference(store, trained.manifest, trained.onnx_bytes, data,
                    data.part(int(trained.manifest.training_metrics["rows"])))
    return "v1"
