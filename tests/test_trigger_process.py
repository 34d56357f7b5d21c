"""The trigger process and `flywheel retrain` against the real broker and the embedded store:
drift in the stored windows requests a retrain once; in-flight and cooldown hold it back; a
manual request skips the cooldown but not an in-flight one; a stale request stops blocking."""
import dataclasses
import time

from feature_store import StoreSettings, WindowMetrics, open_store
from flywheel.cli import main
from processors.trigger.policy import TriggerSettings
from processors.trigger.process import LiveVersion, Requester, RetrainTrigger
from schemas import AvroSerde
from streams.clients import make_producer
from streams.subscriber import Subscriber

NOW = int(time.time() * 1000)


def _model_event(live: str, at: int) -> dict:
    return {"model": "m", "kind": "PROMOTED", "version": live, "at": at, "actor": "test", "reason": "",
            "evidence": {}, "live_version": live, "canary_version": None, "canary_share": 0.0,
            "shadow_versions": [], "versions": {live: {"manifest_path": "x", "sha256": "y"}}}


def test_trigger_requests_once_then_holds_back_and_manual_overrides_cooldown(kafka, registry, make_topics, data_dir):
    catalog = make_topics("m")
    producer = make_producer(kafka)
    producer.produce(catalog.models, AvroSerde(registry, "ModelEvent").encode(_model_event("1", NOW - 3_600_000)), b"m")
    producer.flush(10)
    store = open_store(StoreSettings(), data_dir)
    store.put_metrics([WindowMetrics("m", "1", NOW - (4 - i) * 60_000, NOW - (3 - i) * 60_000,
                                     {"rows": 500, "drift_flagged": 1.0}) for i in range(3)])
    settings = TriggerSettings(drift_windows=3, new_labels=0, cooldown_seconds=3600)
    trigger = RetrainTrigger(kafka, registry, store, settings)

    [request] = trigger.step()
    assert request["reasons"] == ["drift"] and request["base_version"] == "1"
    assert request["metrics"]["flagged_windows"] == 3 and request["dataset"]["end_time"] >= NOW
    [record] = store.retrains("m")
    assert (record.status, record.retrain_id) == ("in_flight", request["retrain_id"])
    assert trigger.requester.metrics.registry.get_sample_value(
        "flywheel_retrain_requests_total", {"model": "m", "reason": "drift"}) == 1

    assert trigger.step() == []                                   # in flight
    store.put_retrain(dataclasses.replace(record, status="done"))
    assert trigger.step() == []                                   # cooling down

    cli = ["--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix, "--data-dir", str(data_dir),
           "retrain", "--model", "m"]
    assert main(cli) == 0                                         # manual: no cooldown
    assert main(cli) == 1                                         # but not while one is in flight

    with Subscriber(kafka, registry, catalog.retrain, "RetrainRequested", start="earliest") as sub:
        emitted = [r.value for r in sub.read(3, timeout=5)]
    assert [e["reasons"] for e in emitted] == [["drift"], ["drift", "manual"]]
    assert [e["requested_by"] for e in emitted] == ["trigger", "cli"]

    stale = Requester(kafka, registry, store, dataclasses.replace(settings, in_flight_timeout_seconds=0.0),
                      clock=lambda: int(time.time() * 1000) + 1)
    assert stale.state("m", LiveVersion("1", NOW)).in_flight is False
    assert {r.status for r in store.retrains("m")} == {"done", "failed"}
    store.close()
