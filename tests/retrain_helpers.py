"""Shared set-up for retrainer and rollout tests: a registered model and realistic feedback."""
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from flywheel.feature_store import FeatureStore, FeedbackRecord, StoreSettings, open_store
from flywheel.processors.models import MatrixLayout, ModelRegistry
from flywheel.processors.simulator.concept import Concept
from flywheel.processors.training import Dataset, train


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


@dataclass
class ChurnWorld:
    store: FeatureStore
    models: ModelRegistry
    concept: Concept
    v1: object          # the TrainedModel registered (and live) before the drift


@contextmanager
def churn_world(kafka, registry, make_topics, data_dir):
    """A real store and model registry with `churn` v1 live, trained before the concept drifts;
    the concept has drifted by the time the caller gets it."""
    make_topics("churn")
    store = open_store(StoreSettings(), data_dir)
    models = ModelRegistry(kafka, registry, data_dir, actor="test")
    concept = Concept()
    v1 = register_model(models, concept, "v1")
    concept.drift()
    try:
        yield ChurnWorld(store, models, concept, v1)
    finally:
        models.close()
        store.close()
