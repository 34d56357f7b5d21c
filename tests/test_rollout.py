"""Canary rollout on live evidence, against the real broker and the embedded store."""
import time

import numpy as np
import pytest
from flywheel.processors.rollout.judge import Verdict
from flywheel.processors.rollout.process import Rollout
from flywheel.processors.rollout.settings import RolloutSettings
from flywheel.processors.simulator.concept import Concept

from tests.retrain_helpers import churn_world, feedback_rows, register_model


@pytest.fixture
def world(kafka, registry, make_topics, data_dir):
    """v1 (trained before the drift) live, v2 (trained after it) registered."""
    with churn_world(kafka, registry, make_topics, data_dir) as w:
        new = register_model(w.models, w.concept, "v2", seed=5)
        yield w.store, w.models, w.concept, w.v1, new


def _serve(store, concept, trained, version, n, start, prefix):
    data = concept.sample(n, np.random.default_rng(hash(prefix) % 1000))
    store.put_feedback(feedback_rows(trained, data, version, start, prefix=prefix))


SETTINGS = RolloutSettings(min_labels=150, max_labels=1000)


def test_a_better_canary_is_promoted_with_its_evidence(world):
    store, models, concept, old, new = world
    models.canary("churn", "v2", 0.2)
    now = int(time.time() * 1000) - 30_000
    rollout = Rollout(store, models, SETTINGS)
    _serve(store, concept, new, "v2", 100, now, "c")
    assert rollout.evaluate(models.deployment("churn")).verdict is Verdict.WAIT
    _serve(store, concept, new, "v2", 200, now + 2000, "c2")
    _serve(store, concept, old, "v1", 400, now, "l")
    decision = rollout.evaluate(models.deployment("churn"))
    assert decision.verdict is Verdict.PROMOTE
    deployment = models.deployment("churn")
    assert deployment.live_version == "v2" and deployment.canary_version is None
    event = models._follower.events["churn"]
    assert event["kind"] == "PROMOTED" and event["evidence"]["canary_loss"] < event["evidence"]["live_loss"]


def test_a_worse_canary_is_rolled_back(world):
    store, models, concept, old, new = world
    models.promote("churn", "v2")
    models.canary("churn", "v1", 0.2)                     # the stale model comes back as a canary
    now = int(time.time() * 1000) - 30_000
    _serve(store, concept, old, "v1", 300, now, "c")
    _serve(store, concept, new, "v2", 300, now, "l")
    assert Rollout(store, models, SETTINGS).evaluate(models.deployment("churn")).verdict is Verdict.ROLL_BACK
    deployment = models.deployment("churn")
    assert deployment.live_version == "v2" and deployment.canary_version is None
    assert models._follower.events["churn"]["kind"] == "ROLLED_BACK"


def test_live_feedback_from_before_the_canary_is_not_compared(world):
    """The live version's old, pre-drift successes must not make it look better than it is now."""
    store, models, concept, old, new = world
    models.canary("churn", "v2", 0.2)
    now = int(time.time() * 1000) - 60_000
    before = Concept()                                     # the world before the drift
    _serve(store, before, old, "v1", 2000, now - 100_000, "early")
    _serve(store, concept, new, "v2", 300, now, "c")
    _serve(store, concept, old, "v1", 300, now, "l")
    assert Rollout(store, models, SETTINGS).evaluate(models.deployment("churn")).verdict is Verdict.PROMOTE
