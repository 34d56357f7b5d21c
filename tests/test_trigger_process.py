"""The trigger process and `flywheel retrain` against the real broker and the embedded store:
drift in the stored windows requests a retrain once; in-flight and cooldown hold it back; a
manual request skips the cooldown but not an in-flight one; a stale request stops blocking; a
request never produced stops blocking after a grace; a retrain is in flight until its canary is
decided; the cooldown counts from a failed retrain's end; a rise of the labelled error stream
requests a retrain on the new concept's rows."""
import dataclasses
import threading
import time

import numpy as np
from flywheel.feature_store import FeedbackRecord, RetrainRecord, StoreSettings, WindowMetrics, open_store
from flywheel.processors.models.store import ArtifactStore
from flywheel.processors.trigger.policy import Decision, ModelState, retrain_request
from flywheel.processors.trigger.process import LiveVersion, LiveVersions, Requester, RetrainTrigger, flagged_run_start
from flywheel.processors.trigger.settings import TriggerSettings
from flywheel.schemas import AvroSerde
from flywheel.streams.clients import make_producer
from flywheel.streams.subscriber import Subscriber

from flywheel.cli import main
from tests.test_worker_support import small_model

NOW = int(time.time() * 1000)


def _model_event(live: str, at: int) -> dict:
    return {"model": "m", "kind": "PROMOTED", "version": live, "at": at, "actor": "test", "reason": "",
            "evidence": {}, "live_version": live, "canary_version": None, "canary_share": 0.0,
            "shadow_versions": [], "versions": {live: {"manifest_path": "x", "sha256": "y"}}}


def drifted(kafka, registry, catalog, data_dir):
    """Model m, live version 1 for an hour, its last three monitor windows flagged for drift."""
    producer = make_producer(kafka)
    producer.produce(catalog.models, AvroSerde(registry, "ModelEvent").encode(_model_event("1", NOW - 3_600_000)), b"m")
    producer.flush(10)
    store = open_store(StoreSettings(), data_dir)
    store.put_metrics([WindowMetrics("m", "1", NOW - (4 - i) * 60_000, NOW - (3 - i) * 60_000,
                                     {"rows": 500, "drift_flagged": 1.0}) for i in range(3)])
    return store


def test_trigger_requests_once_then_holds_back_and_manual_overrides_cooldown(kafka, registry, make_topics, data_dir):
    catalog = make_topics("m")
    store = drifted(kafka, registry, catalog, data_dir)
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

    onnx, manifest, _ = small_model("1")      # `flywheel retrain` takes only a model with a registered version
    ArtifactStore(data_dir).save(onnx, dataclasses.replace(manifest, model="m"))
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


def _world(kafka, registry, make_topics, data_dir):
    make_topics("m")
    return open_store(StoreSettings(), data_dir)


def _request(settings: TriggerSettings, retrain_id: str, at: int) -> dict:
    request = retrain_request(ModelState("m", "1"), Decision(["drift"]), settings, at)
    return {**request, "retrain_id": retrain_id}


def test_a_request_marked_but_never_produced_stops_blocking_after_the_grace(kafka, registry, make_topics, data_dir):
    store = _world(kafka, registry, make_topics, data_dir)
    settings = TriggerSettings(cooldown_seconds=0)
    # What a trigger killed between marking a request and producing it leaves behind.
    store.put_retrain(RetrainRecord("m", "lost1", "in_flight", NOW - 120_000, NOW - 120_000, base_version="1",
                                    reasons=["drift"]))
    requester = Requester(kafka, registry, store, settings)
    requester.emit(_request(settings, "sent1", NOW - 120_000))     # as old, but delivered
    assert requester.state("m", LiveVersion("1", NOW - 3_600_000)).in_flight is True
    records = {r.retrain_id: r for r in store.retrains("m")}
    assert records["lost1"].status == "failed" and "never delivered" in records["lost1"].detail
    assert records["sent1"].status == "in_flight"
    store.put_retrain(dataclasses.replace(records["sent1"], status="done"))
    assert requester.state("m", LiveVersion("1", NOW - 3_600_000)).in_flight is False
    requester.close()
    store.close()


def test_a_retrain_is_in_flight_until_its_canary_is_decided(kafka, registry, make_topics, data_dir):
    store = _world(kafka, registry, make_topics, data_dir)
    requester = Requester(kafka, registry, store, TriggerSettings())
    # The retrainer put candidate 2 on canary and left the request in flight.
    store.put_retrain(RetrainRecord("m", "r1", "in_flight", NOW - 60_000, NOW - 50_000, base_version="1",
                                    new_version="2", reasons=["drift"]))
    store.put_last_retrain("m", NOW - 60_000)
    live = LiveVersions()
    event = {**_model_event("1", NOW - 55_000), "kind": "CANARY", "version": "2", "canary_version": "2"}
    live.apply([event])
    assert requester.state("m", live.models["m"]).in_flight is True           # still being judged
    live.apply([{**event, "kind": "PROMOTED", "at": NOW - 1000, "live_version": "2", "canary_version": None}])
    assert requester.state("m", live.models["m"]).in_flight is False
    [record] = store.retrains("m")
    assert (record.status, record.new_version, record.updated_at) == ("done", "2", NOW - 50_000)
    assert "promoted" in record.detail
    requester.close()
    store.close()


def test_the_cooldown_counts_from_a_failed_retrains_end(kafka, registry, make_topics, data_dir):
    store = _world(kafka, registry, make_topics, data_dir)
    store.put_metrics([WindowMetrics("m", "1", NOW - (4 - i) * 60_000, NOW - (3 - i) * 60_000,
                                     {"rows": 500, "drift_flagged": 1.0}) for i in range(3)])
    # Requested 2 h ago, failed (a slow store) just now: the one-hour cooldown starts now.
    store.put_retrain(RetrainRecord("m", "slow1", "failed", NOW - 7_200_000, NOW - 1000, base_version="1",
                                    reasons=["drift"], detail="StoreUnavailable: timed out"))
    store.put_last_retrain("m", NOW - 7_200_000)
    requester = Requester(kafka, registry, store, TriggerSettings(drift_windows=3, new_labels=0, cooldown_seconds=3600))
    decision, request = requester.evaluate("m", LiveVersion("1", NOW - 3_600_000))
    assert request is None and decision.suppressed_by == "cooldown"
    requester.close()
    store.close()
def test_concept_drift_in_stored_feedback_requests_a_retrain_on_the_new_concept_and_a_restart_rebuilds_it(
        kafka, registry, make_topics, data_dir):
    """Accuracy stays above any threshold over the lookback (a pure concept drift 400 labels ago), yet
    the error stream's rise asks for a retrain on the rows from the change on; a trigger started
    afresh on the same store finds the same change and knows it was acted on."""
    catalog = make_topics("m")
    producer = make_producer(kafka)
    producer.produce(catalog.models, AvroSerde(registry, "ModelEvent").encode(_model_event("1", NOW - 3_600_000)), b"m")
    producer.flush(10)
    store = open_store(StoreSettings(), data_dir)
    rng = np.random.default_rng(0)
    start, drift_at = NOW - 3_400_000, 3000
    store.put_feedback([FeedbackRecord(f"r{i}", "e", "m", "1", start + i * 1000, start + i * 1000,
                                       start + i * 1000 + 2000, {}, {}, "a", None, {}, 0.9,
                                       "b" if rng.random() < (0.05 if i < drift_at else 0.35) else "a")
                        for i in range(3400)])
    settings = TriggerSettings(performance_threshold=0.8, min_labels=200, drift_windows=0, new_labels=0)
    trigger = RetrainTrigger(kafka, registry, store, settings)

    [request] = trigger.step()
    assert request["reasons"] == ["error_change"] and request["metrics"]["performance.accuracy"] > 0.8
    detected = trigger.requester.metrics.registry.get_sample_value(
        "flywheel_error_changes_detected_total", {"model": "m", "version": "1"})
    assert detected == 1.0        # the detection, counted once however many rounds see it
    assert abs(request["dataset"]["start_time"] - (start + drift_at * 1000)) <= 100_000
    restarted = Requester(kafka, registry, store, dataclasses.replace(settings, cooldown_seconds=0))
    state = restarted.state("m", LiveVersion("1", NOW - 3_600_000))
    assert state.change.since == request["metrics"]["change.since"]
    store.put_retrain(dataclasses.replace(store.retrains("m")[0], status="done"))
    decision, again = restarted.evaluate("m", LiveVersion("1", NOW - 3_600_000))
    assert decision.reasons == [] and again is None   # found before the stored last request: acted on
    store.close()


def test_the_flagged_run_starts_at_its_first_window():
    def window(start: int, flagged: bool) -> WindowMetrics:
        return WindowMetrics("m", "1", start, start + 60, {"drift_flagged": float(flagged)})
    assert flagged_run_start([window(0, True), window(60, False), window(120, True), window(180, True)]) == 120
    assert flagged_run_start([window(0, True), window(60, False)]) is None


def test_rounds_follow_the_feedback_topic_and_read_stored_feedback_only_to_build(
        kafka, registry, make_topics, data_dir):
    """Issue 14: each round re-read a day of feedback. Now the store's feedback is read once, and
    labels for predictions hours old that the joiner emits later are counted as they come (replays
    and other versions not)."""
    catalog = make_topics("m")
    producer = make_producer(kafka)
    producer.produce(catalog.models, AvroSerde(registry, "ModelEvent").encode(_model_event("1", NOW - 3_600_000)), b"m")
    producer.flush(10)
    store = open_store(StoreSettings(), data_dir)

    def record(i: int, event_time: int, labelled_at: int, version: str = "1", flags=()) -> FeedbackRecord:
        return FeedbackRecord(f"r{i}", "e", "m", version, event_time, event_time, labelled_at, {}, {}, "a",
                              None, {}, 0.9, "a", flags=list(flags))
    store.put_feedback([record(i, NOW - 3_000_000 + i * 1000, NOW - 2_990_000 + i * 1000) for i in range(300)])
    reads = []
    stored_feedback = store.feedback
    store.feedback = lambda *args: reads.append(args) or stored_feedback(*args)
    trigger = RetrainTrigger(kafka, registry, store, TriggerSettings(new_labels=310, drift_windows=0))
    assert trigger.step() == [] and len(reads) == 1                     # 300 labels: not yet

    serde, labelled = AvroSerde(registry, "FeedbackRecord"), int(time.time() * 1000)
    late = [record(1000 + i, NOW - 5 * 3_600_000, labelled + i) for i in range(10)]    # 5 h late
    ignored = [record(2000, NOW, labelled, version="2"), record(2001, NOW, labelled, flags=["replay"])]
    for r in late + ignored:
        producer.produce(catalog.feedback, serde.encode(vars(r)), r.request_id.encode())
    producer.produce(catalog.feedback, serde.encode(vars(record(2002, NOW, labelled))), b"r2002",
                     headers=[("flywheel-replay", b"joined")])
    producer.flush(10)
    emitted = []
    for _ in range(5):                   # the produced records reach a consumer within a round or two
        emitted += trigger.step()
        if emitted:
            break
    [request] = emitted
    assert request["reasons"] == ["new_labels"]
    assert request["metrics"]["new_labels"] == 310 and request["metrics"]["labelled"] == 310
    assert len(reads) == 1
    trigger.requester.close()
    store.close()


def test_on_topic_generations_as_the_embedded_stack_writes_them_rounds_follow_the_feedback_topic(
        kafka, registry, make_topics, data_dir):
    """The embedded stack writes feedback as generations, which a reader follows by subscription.
    Its catch-up looked at its partitions before any poll had been given them, and so returned
    nothing, every round: on a live stack the trigger never saw a label after its tallies were
    built, and its error detector never fired."""
    catalog = make_topics("m")
    kafka = dataclasses.replace(kafka, topic_generations=True)
    producer = make_producer(kafka)
    producer.produce(catalog.models, AvroSerde(registry, "ModelEvent").encode(_model_event("1", NOW - 3_600_000)), b"m")
    producer.flush(10)
    store = open_store(StoreSettings(), data_dir)
    trigger = RetrainTrigger(kafka, registry, store, TriggerSettings(new_labels=50, drift_windows=0))
    assert trigger.step() == []
    serde, labelled = AvroSerde(registry, "FeedbackRecord"), int(time.time() * 1000)
    for i in range(50):
        r = FeedbackRecord(f"r{i}", "e", "m", "1", labelled, labelled, labelled + i, {}, {}, "a", None, {}, 0.9, "a")
        producer.produce(catalog.feedback, serde.encode(vars(r)), r.request_id.encode())
    producer.flush(10)
    emitted = []
    for _ in range(5):
        emitted += trigger.step()
        if emitted:
            break
    assert [r["reasons"] for r in emitted] == [["new_labels"]] and emitted[0]["metrics"]["new_labels"] == 50
    trigger.requester.close()
    store.close()


def test_an_error_change_is_acted_on_between_rounds(kafka, registry, make_topics, data_dir):
    """With an hour between rounds, a rise of the error found in the feedback topic starts a round
    at once: announced (the metric), and its retrain asked for once `change_min_labels` came."""
    catalog = make_topics("m")
    producer = make_producer(kafka)
    producer.produce(catalog.models, AvroSerde(registry, "ModelEvent").encode(_model_event("1", NOW - 3_600_000)), b"m")
    producer.flush(10)
    store = open_store(StoreSettings(), data_dir)
    trigger = RetrainTrigger(kafka, registry, store, TriggerSettings(
        interval_seconds=3600, change_min_labels=20, new_labels=0, drift_windows=0, performance_threshold=0))
    thread = threading.Thread(target=trigger.run, daemon=True)
    thread.start()
    try:
        time.sleep(3)                                   # its first round, before any feedback
        serde, labelled = AvroSerde(registry, "FeedbackRecord"), int(time.time() * 1000)
        for i in range(600):                            # right, then wrong from the 500th on
            r = FeedbackRecord(f"r{i}", "e", "m", "1", labelled + i, labelled + i, labelled + i, {}, {},
                               "a", None, {}, 0.9, "a" if i < 500 else "b")
            producer.produce(catalog.feedback, serde.encode(vars(r)), r.request_id.encode())
        producer.flush(10)
        deadline = time.monotonic() + 60
        while not store.retrains("m") and time.monotonic() < deadline:
            time.sleep(0.5)
        [retrain] = store.retrains("m")
    finally:
        trigger.stop.set()
        thread.join(30)
        store.close()
    assert retrain.reasons == ["error_change"]
    assert trigger.requester.metrics.registry.get_sample_value(
        "flywheel_error_changes_detected_total", {"model": "m", "version": "1"}) == 1
