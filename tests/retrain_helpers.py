"""Shared set-up for retrainer and rollout tests: a registered model and realistic feedback."""
import numpy as np

from feature_store import FeedbackRecord
from processors.models import MatrixLayout, ModelRegistry
from processors.simulator.concept import Concept
from processors.training import Dataset, train


def register_model(models: ModelRegistry, concept: Concept, version: str, n: int = 3000, seed: int = 0):
    data = concept.sample(n, np.random.default_rng(seed))
    trained = train("churn", version, data.numeric, data.target, data.spec, data.categorical,
                    kind="mlp", low_confidence=0.6)
    models.register(trained.onnx_bytes, trained.manifest)
    return trained


def feedback_rows(trained, data: Dataset, version: str, start_ms: int, step_ms: int = 10,
                  prefix: str = "r") -> list[FeedbackRecord]:
    """What the joiner would have stored: the version's real answers to `data`, with the truth."""
    x = MatrixLayout(data.spec).build(data.numeric, data.categorical)
    proba = trained.estimator.predict_proba(x)
    labels = trained.estimator.classes_[proba.argmax(axis=1)]
    names = [f.name for f in data.spec.numeric]
    rows = []
    for i in range(len(data)):
        t = start_ms + i * step_ms
        rows.append(FeedbackRecord(
            request_id=f"{prefix}{i}", entity_id=f"e{i}", model="churn", model_version=version,
            event_time=t, predicted_at=t + 5, labelled_at=t + 1000,
            numeric={n: float(v) for n, v in zip(names, data.numeric[i])},
            categorical={"plan": data.categorical[0][i]}, predicted_label=str(labels[i]),
            scores=dict(zip(map(str, trained.estimator.classes_), map(float, proba[i]))),
            confidence=float(proba[i].max()), true_label=str(data.target[i])))
    return rows
