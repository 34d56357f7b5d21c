"""The model registry: deployment transitions, sha256 verification (a tampered model is refused
by the store and by a running worker), and ModelEvents on the `models` topic that carry the
whole state."""
from dataclasses import replace

import pytest
from flywheel.processors.models import (
    ArtifactStore,
    Deployment,
    DeploymentError,
    ModelFollower,
    TamperedModel,
    UnknownVersion,
    VersionRef,
)
from flywheel.streams.publisher import Publisher, Request

from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for


def test_transitions():
    d = Deployment("m").register("v1", VersionRef("p1", "s1"))
    assert d.live_version == "v1"
    d = d.register("v2", VersionRef("p2", "s2")).register("v3", VersionRef("p3", "s3"))
    assert d.live_version == "v1"
    d = d.canary("v2", 0.25).shadow("v3")
    assert (d.canary_version, d.canary_share, d.shadow_versions, d.serving) == ("v2", 0.25, ("v3",), ["v1", "v2", "v3"])
    with pytest.raises(DeploymentError):
        d.canary("v1", 0.5)
    with pytest.raises(DeploymentError):
        d.canary("v2", 1.5)
    with pytest.raises(UnknownVersion):
        d.shadow("v9")
    rolled, which = d.rollback()
    assert (rolled.canary_version, rolled.live_version, which) == (None, "v1", "v2")
    promoted = d.promote()
    assert (promoted.live_version, promoted.canary_version) == ("v2", None)
    back, which = promoted.rollback(registered={"v1": 1, "v2": 2, "v3": 3})
    assert (back.live_version, which) == ("v1", "v2")
    event = promoted.to_event("PROMOTED", "v2")
    assert Deployment.from_event(event) == promoted


def test_events_carry_the_whole_state(kafka, registry, data_dir, make_topics):
    make_topics()
    models = register(kafka, registry, data_dir, "m", "v1")
    onnx, manifest, _ = small_model("v2", seed=1)
    models.register(onnx, replace(manifest, model="m", version="v2"))
    models.canary("m", "v2", 0.1)
    follower = ModelFollower(kafka, registry)
    follower.catch_up()
    event = follower.events["m"]
    follower.close()
    assert (event["kind"], event["live_version"], event["canary_version"], event["canary_share"]) == \
        ("CANARY", "v1", "v2", 0.1)
    assert set(event["versions"]) == {"v1", "v2"}
    assert models.manifest("m", "v2").sha256 == event["versions"]["v2"]["sha256"]


def test_tampered_model_is_refused_by_the_store_and_the_worker(kafka, registry, data_dir, make_topics):
    catalog = make_topics("m")
    models = register(kafka, registry, data_dir, "m", "v1")
    ref = models.deployment("m").versions["v1"]
    artifact = ArtifactStore(data_dir).directory("m", "v1") / "model.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    with pytest.raises(TamperedModel, match="REFUSED m/v1"):
        ArtifactStore(data_dir).load("m", "v1", ref.sha256)
    publisher = Publisher(kafka, registry, "m")
    publisher.publish(Request(features=small_model()[2].rows(0, 1)[0]))
    publisher.flush()
    with RunningWorker(kafka, registry, data_dir) as worker:
        wait_for(lambda: worker.load_errors.get("m"))
        assert "REFUSED" in worker.load_errors["m"] and "m" not in worker.served
        assert worker.metrics.model_refusals.labels("tampered")._value.get() == 1
        assert read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 0, settle=1.0) == []
