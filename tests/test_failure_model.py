"""The failure model (processors/runtime/failures.py) on the real broker: records too big for
their outputs, a schema registry that stops answering; and its loop's rules by the error tree."""
import hashlib
import json
import threading

import pytest
from confluent_kafka import TopicPartition
from flywheel.feature_store.errors import InvalidRecord
from flywheel.processors.runtime.commit import FatalCommitError
from flywheel.processors.runtime.failures import hold_back, run_batches
from flywheel.schemas import AvroSerde
from flywheel.schemas.catalog import load_schema, subject_for
from flywheel.schemas.errors import RegistryUnavailable
from flywheel.streams.clients import make_consumer, make_producer

from flywheel.errors import Unavailable
from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for


def _request(data, i: int, **changes) -> dict:
    numeric = {f"f{k:02d}": float(v) for k, v in enumerate(data.numeric[i])}
    record = {"request_id": f"r{i}", "entity_id": f"e{i}", "model": "m", "event_time": 1,
              "numeric": numeric, "categorical": {}, "dense": None, "metadata": {}}
    record.update(changes)
    return record


def _padded(serde, data, i: int, size: int) -> bytes:
    """A request of exactly `size` bytes whose bulk is a numeric feature name: a Prediction
    echoes it, so the prediction is as big as the request."""
    record = _request(data, i)
    base = len(serde.encode({**record, "numeric": {**record["numeric"], "x": 0.0}}))
    pad = size - base
    for extra in range(4):      # the name's length prefix (a varint) grows with the name
        value = serde.encode({**record, "numeric": {**record["numeric"], "x" * (1 + pad - extra): 0.0}})
        if len(value) == size:
            return value
    raise AssertionError(f"cannot pad a request to {size} bytes")


def _letters_fit_and_keep_the_original(letters, originals: dict[int, bytes], budget: int) -> None:
    for letter, message in letters:
        assert len(message.value()) + len(message.key() or b"") < budget
        original = originals[letter["source_offset"]]
        if letter["payload"] != original:      # cut to fit: a prefix, and the detail says what it was
            assert original.startswith(letter["payload"]) and len(letter["payload"]) < len(original)
            assert f"of {len(original)} bytes" in letter["detail"]
            assert hashlib.sha256(original).hexdigest() in letter["detail"]


def test_requests_just_under_and_over_the_limit(kafka, registry, data_dir, make_topics):
    """Issue 12, item 1: a request just under the worker's 1,000,000-byte limit is answered (its
    Prediction echoes it whole and still fits), one just over is an `oversize` dead letter carrying
    it whole, one over every limit (from a client with a bigger producer limit) a dead letter with
    a bounded prefix, its size and sha256; the request behind them is answered, no exit."""
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    _, _, data = small_model()
    serde = AvroSerde(registry, "InferenceRequest")
    budget = kafka.max_message_bytes
    records = [_padded(serde, data, 1, 1_000_000), _padded(serde, data, 2, 1_000_001),
               _padded(serde, data, 3, 2 * budget), serde.encode(_request(data, 5))]
    big_client = make_producer(kafka, **{"message.max.bytes": 4 * budget})
    for value in records:
        big_client.produce(catalog.requests("m"), value, b"k", partition=0)
    assert big_client.flush(30) == 0

    with RunningWorker(kafka, registry, data_dir, group_id="size-limits") as worker:
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 2, timeout=60)
        letters = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", 2, timeout=60)
        assert not worker.stop.is_set()

    assert sorted(p["request_id"] for p, _ in predictions) == ["r1", "r5"]
    assert sorted((d["reason"], d["source_offset"]) for d, _ in letters) == [("oversize", 1), ("oversize", 2)]
    assert next(d for d, _ in letters if d["source_offset"] == 1)["payload"] == records[1]
    _letters_fit_and_keep_the_original(letters, dict(enumerate(records)), budget)


def test_a_prediction_over_the_budget_is_a_dead_letter(kafka, registry, data_dir, make_topics):
    """A request the worker accepts but whose Prediction would not fit the producer's limit (the
    worker's limit set as high as the budget) is an `output_too_large` dead letter, not a
    MSG_SIZE_TOO_LARGE crash; the request behind it is answered."""
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    _, _, data = small_model()
    serde = AvroSerde(registry, "InferenceRequest")
    budget = kafka.max_message_bytes
    records = [_padded(serde, data, 1, budget - 3000), serde.encode(_request(data, 5))]
    out = make_producer(kafka)
    for value in records:
        out.produce(catalog.requests("m"), value, b"k", partition=0)
    assert out.flush(30) == 0

    with RunningWorker(kafka, registry, data_dir, max_request_bytes=budget, group_id="size-budget") as worker:
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 1, timeout=60)
        letters = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", 1, timeout=60)
        assert not worker.stop.is_set()
    assert [p["request_id"] for p, _ in predictions] == ["r5"]
    assert [(d["reason"], d["source_offset"]) for d, _ in letters] == [("output_too_large", 0)]
    _letters_fit_and_keep_the_original(letters, dict(enumerate(records)), budget)


def test_the_worker_refuses_to_start_against_topics_that_cannot_take_its_outputs(kafka, registry, data_dir,
                                                                                  make_topics):
    """An existing cluster's topic with a lower max.message.bytes than the producers' limit: one
    line at start-up, before any record is taken."""
    from confluent_kafka.admin import NewTopic
    from flywheel.processors.runtime.budget import SizeBudgetError
    from flywheel.processors.worker.settings import WorkerSettings
    from flywheel.processors.worker.worker import InferenceWorker
    from flywheel.streams.clients import make_admin
    catalog = make_topics()
    register(kafka, registry, data_dir, "m")
    admin = make_admin(kafka)
    futures = admin.create_topics([NewTopic(t, 1, 1, config={"max.message.bytes": "500000"})
                                   for t in (catalog.requests("m"), catalog.predictions("m"), catalog.shadow("m"))])
    for f in futures.values():
        f.result()
    worker = InferenceWorker(WorkerSettings(instance_id="t"), kafka, registry, data_dir)
    try:
        with pytest.raises(SizeBudgetError, match=r"topic .*m\.predictions accepts records up to 500000 bytes"):
            worker.start()
    finally:
        worker.close()


class FlakyRegistry:
    """The real embedded registry behind a switch: while `down`, looking up a schema id fails the
    way an unreachable registry does."""

    def __init__(self, real):
        self.real = real
        self.down = threading.Event()
        self.refused = 0

    def schema_by_id(self, schema_id: int) -> str:
        if self.down.is_set():
            self.refused += 1
            raise RegistryUnavailable("schema registry unreachable: connection refused")
        return self.real.schema_by_id(schema_id)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_registry_outage_while_decoding_is_backpressure(kafka, registry, data_dir, make_topics):
    """Issue 12, item 7: a request written with a schema version the worker has not seen needs
    the registry; while it cannot answer, the worker holds back (no exit, nothing committed, no
    dead letter) and answers both requests once it is back."""
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    _, _, data = small_model()
    schema = json.loads(load_schema("InferenceRequest"))
    schema["fields"].append({"name": "origin", "type": ["null", "string"], "default": None})
    evolved = AvroSerde(registry, "InferenceRequest", json.dumps(schema))
    current = AvroSerde(registry, "InferenceRequest")
    assert evolved.schema_id != current.schema_id and len(registry.versions(subject_for("InferenceRequest"))) == 2
    out = make_producer(kafka)
    out.produce(catalog.requests("m"), evolved.encode({**_request(data, 1), "origin": "app"}), b"k", partition=0)
    out.produce(catalog.requests("m"), current.encode(_request(data, 2)), b"k", partition=0)
    assert out.flush(10) == 0

    flaky = FlakyRegistry(registry)
    flaky.down.set()
    runner = RunningWorker(kafka, registry=flaky, data_dir=data_dir, group_id="registry-outage")
    with runner as worker:
        wait_for(lambda: flaky.refused >= 3, timeout=60)
        assert runner.thread.is_alive()
        probe = make_consumer(kafka, "registry-outage")
        committed = probe.committed([TopicPartition(catalog.requests("m"), 0)], timeout=10)[0].offset
        probe.close()
        assert committed < 1              # nothing committed past the record it cannot decode
        assert read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 0, settle=0.5) == []
        flaky.down.clear()
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 2, timeout=60)
        assert runner.thread.is_alive() and not worker.stop.is_set()
    assert sorted(p["request_id"] for p, _ in predictions) == ["r1", "r2"]
    assert read_topic(kafka, registry, catalog.deadletter, "DeadLetter", 0, settle=0.3) == []


def test_a_dead_letter_always_fits_even_when_headers_alone_are_over(registry):
    """The record's payload is cut first; headers and key go too when they alone are too big."""
    from flywheel.processors.runtime import DeadLetterWriter
    from flywheel.processors.runtime.pipeline import Outbox
    writer = DeadLetterWriter(AvroSerde(registry, "DeadLetter"), "dl", "test", max_bytes=20_000)
    out = Outbox()
    for payload, headers in ((b"p" * 50_000, [("h", b"small")]), (b"p" * 100, [("big", b"h" * 30_000)])):
        writer.send(out, writer.record("oversize", "too big", topic="t", partition=0, offset=1, key=b"k" * 10,
                                       value=payload, headers=headers))
    (_, [cut], [cut_key], [cut_headers]), (_, [dropped], [dropped_key], [dropped_headers]) = out.chunks
    serde = AvroSerde(registry, "DeadLetter")
    first, second = serde.decode(cut), serde.decode(dropped)
    assert len(cut) < 20_000 and cut_key == b"k" * 10 and cut_headers == [("h", b"small")]
    assert b"p" * 50_000 != first["payload"] and (b"p" * 50_000).startswith(first["payload"])
    assert hashlib.sha256(b"p" * 50_000).hexdigest() in first["detail"] and "of 50000 bytes" in first["detail"]
    assert len(dropped) < 20_000 and dropped_key is None and dropped_headers is None
    assert "header(s) and the key dropped" in second["detail"]


def test_the_joiner_and_monitor_refuse_to_start_against_a_too_small_deadletter_topic(kafka, registry, data_dir,
                                                                                      make_topics):
    from confluent_kafka.admin import NewTopic
    from flywheel.feature_store import StoreSettings, open_store
    from flywheel.processors.joiner.process import FeedbackJoiner
    from flywheel.processors.joiner.settings import JoinerSettings
    from flywheel.processors.monitor.process import Monitor
    from flywheel.processors.monitor.settings import MonitorSettings
    from flywheel.processors.runtime.budget import SizeBudgetError
    from flywheel.streams.clients import make_admin
    from flywheel.streams.topics import TopicCatalog
    catalog = TopicCatalog(kafka)
    admin = make_admin(kafka)
    for f in admin.create_topics([NewTopic(catalog.deadletter, 1, 1, config={"max.message.bytes": "100000"})]).values():
        f.result()
    make_topics()
    store = open_store(StoreSettings(), data_dir)
    for processor in (FeedbackJoiner(kafka, registry, store, JoinerSettings(), instance="t"),
                      Monitor(kafka, registry, store, MonitorSettings())):
        with pytest.raises(SizeBudgetError, match=r"deadletter accepts records up to 100000 bytes"):
            processor.run()


class GpuPoolBusy(Unavailable):
    """A dependency processors/runtime has never heard of: its error only subclasses Unavailable."""


class Steps:
    """A processor's step that fails with each of `errors` in turn, then succeeds, and stops the
    loop once it has succeeded `until` times."""

    def __init__(self, stop: threading.Event, errors: list[Exception], until: int = 1):
        self.stop, self.errors, self.until = stop, list(errors), until
        self.attempts = self.done = 0

    def __call__(self) -> str:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.done += 1
        if self.done == self.until:
            self.stop.set()
        return "done"


def test_any_unavailable_is_waited_out_and_the_loop_resumes():
    """Rule 2 by the branch, not a list: a new dependency's error pauses the loop, which redoes
    the batch; the failures before it do not stop it."""
    stop = threading.Event()
    step = Steps(stop, [GpuPoolBusy("gpu pool busy"), RegistryUnavailable("down"), GpuPoolBusy("still busy")], until=2)
    run_batches(step, stop, "test")
    assert (step.attempts, step.done) == (5, 2)


@pytest.mark.parametrize("bug", [FatalCommitError("fenced"), InvalidRecord("bad row"), KeyError("x")])
def test_anything_not_unavailable_propagates_from_the_loop(bug):
    """Rule 3: a bug, a fenced producer, even a record's own error that reached the loop instead of
    becoming a dead letter, all exit: never waited out."""
    stop = threading.Event()
    step = Steps(stop, [GpuPoolBusy("busy"), bug])
    with pytest.raises(type(bug)):
        run_batches(step, stop, "test")
    assert step.attempts == 2


def test_hold_back_retries_a_call_in_place_while_unavailable():
    stop = threading.Event()
    call = Steps(threading.Event(), [GpuPoolBusy("busy"), GpuPoolBusy("busy")])
    assert hold_back(call, stop, "test") == "done" and call.attempts == 3
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(GpuPoolBusy):     # stopping: the error is raised, the batch stays uncommitted
        hold_back(Steps(threading.Event(), [GpuPoolBusy("busy")]), stopped, "test")
