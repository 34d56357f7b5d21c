"""The retrainer against the real broker and the embedded store: a better candidate becomes a
canary with its reference profile; a worse one is rejected with the reason on the models topic;
one request yields at most one version across a crash and redelivery; a dataset too small and a
canary still undecided are recorded rejections; an undecodable request is a dead letter."""
import dataclasses
import hashlib
import threading
import time
from pathlib import Path

import flywheel.processors.training as training
import numpy as np
import pytest
from flywheel.processors.retrainer import dataset as datasets
from flywheel.processors.retrainer.process import Retrainer, version_for
from flywheel.processors.retrainer.settings import RetrainerSettings
from flywheel.processors.retrainer.trainer_spec import code_sha256
from flywheel.processors.retrainer.validate import outputs
from flywheel.processors.trigger.policy import reproduction_request
from flywheel.schemas import AvroSerde
from flywheel.streams.clients import make_producer
from flywheel.streams.subscriber import Subscriber

from flywheel.cli import main
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
    canary, onnx = models.store.load("churn", deployment.canary_version)
    holdout = datasets.export(store, "churn", canary.features, now - 120_000, now + 1, 0.25, 0.2).holdout
    assert canary.output.low_confidence == pytest.approx(
        np.quantile(outputs(canary, onnx, holdout).max(axis=1), 0.01))
    assert canary.output.low_confidence != models.store.load("churn", "v1")[0].output.low_confidence
    record = store.get_retrain("churn", "abc123def")
    # In flight until the rollout decides its canary (the trigger closes it then).
    assert record.status == "in_flight" and record.new_version == deployment.canary_version
    assert retrainer.handle(_request(now)) == "resumed"  # redelivered: nothing happens twice
    assert models.deployment("churn").versions.keys() == deployment.versions.keys()
    store.put_retrain(dataclasses.replace(record, status="done"))
    assert retrainer.handle(_request(now)) == "skipped"


def test_a_retrained_version_records_the_rows_and_code_that_made_it(setup, kafka, registry, data_dir, capsys):
    store, models, now = setup
    request = {**_request(now, "lineage1"), "reasons": ["error_change"],
               "metrics": {"change.labels": 40.0, "change.since": float(now - 30_000)}}
    retrainer = Retrainer(kafka, registry, store, models, RetrainerSettings())
    assert retrainer.handle(request) == "accepted"
    version = models.deployment("churn").canary_version
    manifest, _ = models.store.load("churn", version)
    lineage = manifest.lineage
    assert (lineage.parent, lineage.retrain_id, lineage.reasons) == ("v1", "lineage1", ("error_change",))
    assert (lineage.data_start, lineage.data_end) == (now - 120_000, now + 1)
    # the same range exported again is the same rows: same count, same content hash
    again = datasets.export(store, "churn", manifest.features, now - 120_000, now + 1, 0.25, 0.2)
    assert lineage.dataset_sha256 == again.content_sha256 and len(lineage.dataset_sha256) == 64
    assert (lineage.train_rows, lineage.holdout_rows) == (again.train_rows, len(again.holdout)) == (1125, 375)
    assert lineage.hard_examples == again.hard_examples
    assert lineage.trainer == "reference:mlp" and lineage.trainer_sha256 == code_sha256("reference:mlp")
    built_in = Path(training.__file__).parent / "train.py"
    assert lineage.trainer_sha256 == hashlib.sha256(built_in.read_bytes()).hexdigest()
    # the rule that asked and its evidence are on the version's events
    event = models._follower.events["churn"]
    assert event["kind"] == "CANARY" and event["evidence"]["request.change.labels"] == 40.0
    assert event["reason"].startswith("asked for error_change: candidate accuracy")
    # and `flywheel models show` prints it, without a broker
    assert main(["--data-dir", str(data_dir), "models", "show", "churn", version]) == 0
    shown = capsys.readouterr().err
    assert f"dataset sha256: {lineage.dataset_sha256}" in shown
    assert "parent: v1; retrain lineage1 for error_change" in shown
    assert "1,125 rows trained on" in shown and "375 held out" in shown
    # reproduced from its lineage (the canary decided first): the same rows, the same hash
    models.rollback("churn")
    again = retrainer.handle(reproduction_request("churn", "v1", lineage, now + 1000, "test"))
    assert again == "accepted"
    reproduced = models.store.load("churn", models.deployment("churn").canary_version)[0].lineage
    assert reproduced.dataset_sha256 == lineage.dataset_sha256 and reproduced.reasons == ("manual",)
    assert (reproduced.data_start, reproduced.data_end, reproduced.holdout_share) == (now - 120_000, now + 1, 0.25)
    # an imported version has none: refused in one line before anything is asked
    assert main(["--data-dir", str(data_dir), "retrain", "-m", "churn", "--reproduce", "v1"]) == 1
    assert "churn v1 has no lineage to reproduce" in capsys.readouterr().err


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


def test_a_request_registered_before_a_crash_is_deployed_not_trained_again(setup, kafka, registry, data_dir):
    store, models, now = setup
    request = _request(now, "crash1")
    # What a retrainer killed right after `register` left: the request's version registered, no
    # canary, no outcome, the request still on the topic (it will be redelivered).
    incumbent = models.manifest("churn", "v1")
    onnx = models.store.load("churn", "v1", incumbent.sha256)[1]
    models.register(onnx, dataclasses.replace(incumbent, version=version_for(request)))
    retrainer = Retrainer(kafka, registry, store, models, RetrainerSettings(trainer="command:false"))
    assert retrainer.handle(request) == "resumed"            # the failing trainer was never called
    deployment = models.deployment("churn")
    assert set(deployment.versions) == {"v1", version_for(request)}
    assert deployment.canary_version == version_for(request)
    assert store.get_retrain("churn", "crash1").new_version == version_for(request)


def test_too_few_rows_and_an_undecided_canary_are_recorded_rejections(setup, kafka, registry):
    store, models, now = setup
    retrainer = Retrainer(kafka, registry, store, models, RetrainerSettings())
    empty = {**_request(now, "empty1"), "dataset": {"start_time": 0, "end_time": 1000, "hard_example_share": 0.2,
                                                    "holdout_share": 0.25}}
    assert retrainer.handle(empty) == "rejected"
    event = models._follower.events["churn"]
    assert (event["kind"], event["version"]) == ("REJECTED", version_for(empty)) and "too few" in event["reason"]
    record = store.get_retrain("churn", "empty1")
    assert (record.status, record.new_version) == ("done", None) and "too few" in record.detail

    assert retrainer.handle(_request(now, "first1")) == "accepted"
    assert retrainer.handle(_request(now, "second1")) == "rejected"
    assert models.deployment("churn").canary_version == version_for(_request(now, "first1"))
    assert "still undecided" in store.get_retrain("churn", "second1").detail


def test_an_undecodable_request_is_a_dead_letter_and_the_next_is_handled(setup, kafka, registry, make_topics):
    store, models, now = setup
    catalog = make_topics("churn")
    producer = make_producer(kafka)
    producer.produce(catalog.retrain, b"\x00garbage", b"churn")
    producer.produce(catalog.retrain, AvroSerde(registry, "RetrainRequested").encode(
        {**_request(now, "after1"), "dataset": {"start_time": 0, "end_time": 1000, "hard_example_share": 0.0,
                                                "holdout_share": 0.2}}), b"churn")
    producer.flush(10)
    retrainer = Retrainer(kafka, registry, store, models, RetrainerSettings(group_id="g-" + catalog.retrain))
    runner = threading.Thread(target=retrainer.run)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while store.get_retrain("churn", "after1") is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        retrainer.stop.set()
        runner.join(30)
    assert store.get_retrain("churn", "after1").status == "done"          # rejected: too few rows
    with Subscriber(kafka, registry, catalog.deadletter, "DeadLetter", start="earliest") as sub:
        [dead] = [r.value for r in sub.read(1, timeout=10)]
    assert (dead["processor"], dead["payload"], dead["key"]) == ("retrainer", b"\x00garbage", b"churn")
    assert retrainer.metrics.registry.get_sample_value(
        "flywheel_retrain_outcomes_total", {"model": "churn", "outcome": "invalid"}) == 1
