"""The retrainer against the real broker and the embedded store: a better candidate becomes a
canary with its reference profile; a worse one is rejected with the reason on the models topic."""
import time

import numpy as np
import pytest

from processors.retrainer import dataset as datasets
from processors.retrainer.process import Retrainer, RetrainerSettings
from processors.retrainer.validate import outputs
from tests.retrain_helpers import churn_world, feedback_rows


@pytest.fixture
def setup(kafka, registry, make_topics, data_dir):
    """v1 live, and a minute of its answers to drifted traffic in the feedback store."""
    with churn_world(kafka, registry, make_topics, data_dir) as world:
        now = int(time.time() * 1000)
        drifted = world.concept.sample(1500, np.random.default_rng(3))
        world.store.put_feedback(feedback_rows(world.v1, drifted, "v1", now - 60_000, step_ms=20))
        yield world.store, world.models, now


def _request(now: int, retrain_id: str = "abc123def") -> dict:
    return {"retrain_id": retrain_id, "model": "churn", "base_version": "v1", "requested_at": now,
            "requested_by": "test", "reasons": ["drift"], "metrics": {},
            "dataset": {"start_time": now - 120_000, "end_time": now + 1, "hard_example_share": 0.2,
                        "holdout_share": 0.25}}


def test_a_better_candidate_becomes_a_canary(setup, kafka, registry):
    store, models, now = setup
    retrainer = Retrainer(kafka, registry, store, models, RetrainerSettings(canary_share=0.3))
    assert retrainer.handle(_request(now)) == "accepted"
    deployment = models.deployment("churn")
    assert deployment.live_version == "v1" and deployment.canary_version not in (None, "v1")
    assert deployment.canary_share == pytest.approx(0.3)
    event = models._follower.events["churn"]
    assert event["kind"] == "CANARY"
    assert event["evidence"]["candidate_accuracy"] > event["evidence"]["incumbent_accuracy"] + 0.01
    assert store.get_profile("churn", deployment.canary_version) is not None
    # Its low-confidence line is its own: the 1% quantile of its answers on the held-out rows.
    ref = deployment.versions[deployment.canary_version]
    canary, onnx = models.store.load(ref.manifest_path, ref.sha256)
    holdout = datasets.export(store, "churn", canary.features, now - 120_000, now + 1, 0.25, 0.2).holdout
    assert canary.output.low_confidence == pytest.approx(
        np.quantile(outputs(canary, onnx, holdout).max(axis=1), 0.01))
    assert canary.output.low_confidence != models.store.load(
        deployment.versions["v1"].manifest_path, deployment.versions["v1"].sha256)[0].output.low_confidence
    record = store.get_retrain("churn", "abc123def")
    assert record.status == "done" and record.new_version == deployment.canary_version
    assert retrainer.handle(_request(now)) == "skipped"  # redelivered: nothing happens twice


def test_a_worse_candidate_is_rejected_with_the_reason(setup, kafka, registry):
    store, models, now = setup
    settings = RetrainerSettings(trainer="python:tests.bad_trainer:train", min_improvement=0.01)
    retrainer = Retrainer(kafka, registry, store, models, settings)
    assert retrainer.handle(_request(now, "worse1")) == "rejected"
    deployment = models.deployment("churn")
    assert deployment.canary_version is None and deployment.live_version == "v1"
    event = models._follower.events["churn"]
    assert event["kind"] == "REJECTED" and "does not beat" in event["reason"]
    assert store.get_retrain("churn", "worse1").status == "done"


def test_a_broken_trainer_fails_the_request_and_says_why(setup, kafka, registry):
    store, models, now = setup
    retrainer = Retrainer(kafka, registry, store, models, RetrainerSettings(trainer="command:false"))
    assert retrainer.handle(_request(now, "broken1")) == "failed"
    record = store.get_retrain("churn", "broken1")
    assert record.status == "failed" and "exited with 1" in record.detail
