"""Who decides which model runs: the worker, from its own artifact store. The swap an attacker
on the `models` topic tried (a ModelEvent naming a manifest outside the store, with that file's
own sha256) is refused loudly and the registered version keeps serving; with a signing key,
unsigned and tampered events are refused too."""
import dataclasses
import hashlib
import time
from dataclasses import replace

import pytest
from flywheel.processors.models import ArtifactStore, ModelFollower
from flywheel.processors.models.errors import ForgedEvent, InvalidName, UnregisteredVersion
from flywheel.processors.models.refusals import RefusalLog
from flywheel.schemas import AvroSerde
from flywheel.schemas.secret import Secret
from flywheel.streams.clients import make_producer
from flywheel.streams.publisher import Publisher, Request

from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for


def _requests(kafka, registry, n: int, start: int = 0) -> None:
    publisher = Publisher(kafka, registry, "m")
    rows = small_model()[2].rows(0, n)
    for i, row in enumerate(rows):
        publisher.publish(Request(features=row, entity_id=f"e{start + i}"))
    publisher.flush()


def _versions_answering(kafka, registry, catalog, expect: int) -> set[str]:
    found = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", expect)
    return {p["model_version"] for p, _ in found}


def _forge(kafka, registry, event: dict, headers=None) -> None:
    producer = make_producer(kafka)
    producer.produce(kafka_topic(kafka), AvroSerde(registry, "ModelEvent").encode(event), key=event["model"].encode(),
                     headers=headers)
    producer.flush(10)


def kafka_topic(kafka) -> str:
    from flywheel.streams.topics import TopicCatalog
    return TopicCatalog(kafka).models


def _evil(tmp_path) -> tuple[str, str]:
    """Another model's files outside the artifact store: (manifest path, its own sha256)."""
    onnx, manifest, _ = small_model("v9", seed=7)
    evil = tmp_path / "evil"
    evil.mkdir()
    sha = hashlib.sha256(onnx).hexdigest()
    (evil / "model.onnx").write_bytes(onnx)
    (evil / "manifest.json").write_text(replace(manifest, model="m", version="evil", sha256=sha).to_json())
    return str(evil / "manifest.json"), sha


def test_the_forged_swap_is_refused_and_the_registered_version_keeps_serving(kafka, registry, data_dir,
                                                                            make_topics, tmp_path):
    catalog = make_topics("m")
    models = register(kafka, registry, data_dir, "m", "v1")
    path, sha = _evil(tmp_path)
    live = models.events()["m"]
    forged = {**live, "kind": "PROMOTED", "version": "evil", "live_version": "evil", "actor": "attacker",
              "versions": {**live["versions"], "evil": {"manifest_path": path, "sha256": sha}}}
    # The same trick on a registered version's name: its path and hash swapped for the evil file's.
    forged_v1 = {**live, "kind": "PROMOTED", "at": live["at"] + 1,
                 "versions": {"v1": {"manifest_path": path, "sha256": sha}}}
    with RunningWorker(kafka, registry, data_dir) as worker:
        wait_for(lambda: "m" in worker.served)
        _forge(kafka, registry, forged)
        wait_for(lambda: worker.metrics.model_refusals.labels("unregistered")._value.get() == 1)
        _forge(kafka, registry, forged_v1)
        wait_for(lambda: worker.metrics.model_refusals.labels("sha256_mismatch")._value.get() == 1)
        assert worker.served["m"].live.version == "v1"
        _requests(kafka, registry, 20)
        assert _versions_answering(kafka, registry, catalog, 20) == {"v1"}
    # Restarted, the worker finds the forged event last on the topic: it serves the state the
    # registry logged in its data dir instead of leaving the model unserved.
    # (Its own group: it leaves before its join completes, which Tansu holds against the group.)
    with RunningWorker(kafka, registry, data_dir, instance_id="restarted", group_id="restarted") as worker:
        wait_for(lambda: "m" in worker.served)
        assert worker.served["m"].live.version == "v1"
    refusals = {(r.model, r.version, r.reason) for r in RefusalLog(data_dir).records()}
    assert refusals == {("m", "evil", "unregistered"), ("m", "v1", "sha256_mismatch")}
    # `flywheel status` and reports draw the refusal on the model's timeline.
    from flywheel.feature_store import StoreSettings, open_store

    from flywheel.views.gather import model_view
    now = int(time.time() * 1000)
    with open_store(StoreSettings(), data_dir) as store:
        view = model_view(store, data_dir, "m", now - 3_600_000, now + 1, latency_bins=0)
    assert [(e.kind, e.version) for e in view.events if e.kind == "REFUSED"] == [("REFUSED", "evil"), ("REFUSED", "v1")]


def test_the_store_refuses_names_that_leave_its_root_and_claims_it_did_not_record(data_dir):
    store = ArtifactStore(data_dir)
    for model, version in (("..", "v1"), ("m", "../../etc"), ("m/x", "v1"), (".hidden", "v1"), ("m", "")):
        with pytest.raises(InvalidName):
            store.load(model, version)
    with pytest.raises(UnregisteredVersion):
        store.load("m", "v1")
    onnx, manifest, _ = small_model()
    with pytest.raises(InvalidName):
        store.save(onnx, replace(manifest, model="m", version="v1", artifact="../../escape.onnx"))
    store.save(onnx, replace(manifest, model="m", version="v1"))
    with pytest.raises(ForgedEvent):
        store.load("m", "v1", "0" * 64)
    assert store.load("m", "v1")[0].version == "v1"


def test_an_event_naming_a_model_outside_the_root_is_refused_by_the_follower(kafka, registry, data_dir,
                                                                             make_topics):
    make_topics()
    register(kafka, registry, data_dir, "m", "v1")
    live = ModelFollower(kafka, registry)
    live.catch_up()
    event = live.events["m"]
    live.close()
    _forge(kafka, registry, {**event, "model": "../../outside"})
    refused = []
    follower = ModelFollower(kafka, registry, refused.append)
    follower.catch_up()
    follower.close()
    assert set(follower.events) == {"m"}
    assert [(r.model, r.reason) for r in refused] == [("../../outside", "bad_name")]


def test_with_a_key_unsigned_and_tampered_events_are_refused(kafka, registry, data_dir, make_topics, tmp_path):
    signed = dataclasses.replace(kafka, model_signing_key=Secret("k" * 32))
    catalog = make_topics("m")
    models = register(signed, registry, data_dir, "m", "v1")
    onnx, manifest, _ = small_model("v2", seed=1)
    models.register(onnx, replace(manifest, model="m", version="v2"))
    promote_v2 = {**models.events()["m"], "kind": "PROMOTED", "version": "v2", "live_version": "v2"}
    other_key = dataclasses.replace(signed, model_signing_key=Secret("x" * 32))
    with RunningWorker(signed, registry, data_dir) as worker:
        wait_for(lambda: "m" in worker.served)
        _forge(kafka, registry, promote_v2)                       # unsigned
        value = AvroSerde(registry, "ModelEvent").encode(promote_v2)
        from flywheel.processors.models.signing import EventSigner
        wrong = EventSigner(other_key.model_signing_key).headers(b"m", value)
        _forge(kafka, registry, promote_v2, headers=wrong)         # signed with another key
        good = EventSigner(signed.model_signing_key).headers(b"m", value)
        _forge(kafka, registry, {**promote_v2, "live_version": "v1"}, headers=good)  # a signature of other bytes
        m = worker.metrics.model_refusals
        wait_for(lambda: (m.labels("unsigned")._value.get(), m.labels("bad_signature")._value.get()) == (1, 2))
        assert worker.served["m"].live.version == "v1"
        _requests(kafka, registry, 10)
        assert _versions_answering(kafka, registry, catalog, 10) == {"v1"}
        models.promote("m", "v2")                                  # the registry signs with the key
        wait_for(lambda: worker.served["m"].live.version == "v2")
    assert m.labels("unsigned")._value.get() == 1
    # A reader without the key still follows (signatures are headers), and a keyed reader that
    # re-reads the topic from the start ends at the registry's state.
    follower = ModelFollower(signed, registry)
    follower.catch_up()
    follower.close()
    assert follower.events["m"]["live_version"] == "v2"
