"""The public trainer-plugin API: a file anywhere (no PYTHONPATH) with a function that takes the
training data as plain columns and returns a fitted scikit-learn pipeline; Flywheel converts it
to a candidate the worker can serve, with its classes as labels."""
import numpy as np
import pytest
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.processors.retrainer import dataset as datasets
from flywheel.processors.retrainer.trainers import TrainerFailed, make_trainer
from flywheel.processors.training import synthetic
from flywheel.processors.worker.sessions import LoadedVersion

from tests.test_worker_support import small_model

PLUGIN = '''
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def train(data):
    numeric = [name for name in data.features if name not in data.categorical]
    return Pipeline([
        ("prepare", ColumnTransformer([("numbers", "passthrough", numeric),
                                       ("one_hot", OneHotEncoder(handle_unknown="ignore"), list(data.categorical))])),
        ("model", GradientBoostingClassifier(n_estimators=30, random_state=0)),
    ]).fit(data.frame(), data.target)
'''


def served_accuracy(plugin: str, tmp_path) -> float:
    """Trains a candidate with the plugin source on synthetic data with a categorical feature and
    returns its accuracy on that data as the worker serves it; its labels must be the classes."""
    (tmp_path / "my_trainer.py").write_text(plugin)
    data = synthetic(600, n_numeric=4, categories={"plan": ("free", "pro", "team")}, seed=1)
    path = datasets.save(data, tmp_path / "data.npz")
    _, incumbent, _ = small_model()
    candidate = make_trainer(f"sklearn:{tmp_path / 'my_trainer.py'}:train").train(path, tmp_path, incumbent)
    assert set(candidate.output.labels) == set(np.unique(data.target))
    manifest = type(incumbent)(incumbent.model, "candidate", data.spec, candidate.output)
    answers = LoadedVersion(manifest, candidate.onnx_bytes).run(MatrixLayout(data.spec).build(data.numeric,
                                                                                               data.categorical))
    predicted = np.asarray(candidate.output.labels)[answers.argmax(axis=1)]
    return float(np.mean(predicted == data.target))


def test_a_plugin_file_returning_a_pipeline_becomes_a_servable_candidate(tmp_path):
    assert served_accuracy(PLUGIN, tmp_path) > 0.8       # it learned, and serves in the worker's layout


def test_a_plugin_that_cannot_be_found_is_a_trainer_failure(tmp_path):
    _, incumbent, data = small_model()
    path = datasets.save(data, tmp_path / "data.npz")
    with pytest.raises(TrainerFailed, match="cannot be loaded"):
        make_trainer(f"sklearn:{tmp_path / 'nothing.py'}:train").train(path, tmp_path, incumbent)


def test_the_retrainer_canaries_a_better_candidate_from_a_plugin_pipeline(kafka, registry, make_topics, data_dir,
                                                                         tmp_path):
    """The loop's retrain with the user's own pipeline code: drifted feedback in the store, the
    plugin's GradientBoosting pipeline beats the pre-drift v1 and goes out as a canary."""
    import time

    from flywheel.processors.retrainer.process import Retrainer
    from flywheel.processors.retrainer.settings import RetrainerSettings

    from tests.retrain_helpers import churn_world, feedback_rows
    (tmp_path / "my_trainer.py").write_text(PLUGIN)
    with churn_world(kafka, registry, make_topics, data_dir) as world:
        now = int(time.time() * 1000)
        drifted = world.concept.sample(1500, np.random.default_rng(3))
        world.store.put_feedback(feedback_rows(world.v1, drifted, "v1", now - 60_000, step_ms=20))
        settings = RetrainerSettings(trainer=f"sklearn:{tmp_path / 'my_trainer.py'}:train", canary_share=0.3)
        retrainer = Retrainer(kafka, registry, world.store, world.models, settings)
        request = {"retrain_id": "plugin1", "model": "churn", "base_version": "v1", "requested_at": now,
                   "requested_by": "test", "reasons": ["drift"], "metrics": {},
                   "dataset": {"start_time": now - 120_000, "end_time": now + 1, "hard_example_share": 0.2,
                               "holdout_share": 0.25}}
        assert retrainer.handle(request) == "accepted"
        deployment = world.models.deployment("churn")
        event = world.models._follower.events["churn"]
        assert event["kind"] == "CANARY" and deployment.canary_version not in (None, "v1")
        assert event["evidence"]["candidate_accuracy"] > event["evidence"]["incumbent_accuracy"] + 0.01
        assert world.models.manifest("churn", deployment.canary_version).output.labels == ("churn", "stay")
