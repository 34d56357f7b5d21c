"""A hostile corpus against a running worker and joiner while good traffic flows (issue 12):
crafted records for every refusal, plus hypothesis mutations of valid requests and labels.

No processor exits; every crafted record is exactly one dead letter with its expected reason;
every mutated record is at most one dead letter, and exactly one when it cannot be decoded;
every good request gets exactly one prediction and every good label exactly one feedback row.
"""
import math
import struct
import threading
import time

import pytest
from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.joiner.process import FeedbackJoiner
from flywheel.processors.joiner.settings import JoinerSettings
from flywheel.schemas import AvroSerde
from flywheel.schemas.errors import SerdeError
from flywheel.streams.clients import make_producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for


def _request(data, i: int, request_id: str, **changes) -> dict:
    numeric = {f"f{k:02d}": float(v) for k, v in enumerate(data.numeric[i % len(data.numeric)])}
    return {"request_id": request_id, "entity_id": f"e{i}", "model": "m", "event_time": int(time.time() * 1000),
            "numeric": numeric, "categorical": {}, "dense": None, "metadata": {}, **changes}


def _label(request_id: str, label: str | None = "class_0", value: float | None = None, **changes) -> dict:
    return {"request_id": request_id, "model": "m", "label": label, "value": value,
            "labelled_at": int(time.time() * 1000), "source": "test", **changes}


# A mutation of a valid record's bytes: flip a byte, cut the record short, or append junk.
MUTATION = st.tuples(st.sampled_from(["flip", "cut", "append"]), st.integers(0, 10_000),
                     st.binary(min_size=1, max_size=8))


def _mutate(value: bytes, mutation) -> bytes:
    kind, at, junk = mutation
    at %= len(value)
    if kind == "flip":
        return value[:at] + bytes([value[at] ^ (junk[0] | 1)]) + value[at + 1:]
    if kind == "cut":
        return value[:at]
    return value + junk


def _decodes(serde: AvroSerde, value: bytes) -> dict | None:
    try:
        return serde.decode(value)
    except SerdeError:
        return None


class Joiner:
    def __init__(self, kafka, registry, data_dir):
        self.store = open_store(StoreSettings(), data_dir)
        self.joiner = FeedbackJoiner(kafka, registry, self.store,
                                     # on the compiled core where built (the other joiner tests run the default
                                     # Python path): the same dead letters either way
                                     JoinerSettings(early_label_wait_seconds=2.0, group_id="hostile-joiner",
                                                    compiled=True),
                                     instance="hostile")
        self.thread = threading.Thread(target=self.joiner.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.joiner.stop.set()
        self.thread.join(30)


def run_corpus(kafka, registry, data_dir, make_topics, good_count: int, request_mutations: list,
               label_mutations: list) -> None:
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    _, _, data = small_model()
    requests, labels = AvroSerde(registry, "InferenceRequest"), AvroSerde(registry, "GroundTruth")
    now = int(time.time() * 1000)
    crafted_requests = {
        "undecodable": b"\xff\xfe not avro",
        "unknown_schema": struct.pack(">bI", 0, 987654) + b"\x00" * 20,
        "missing_feature": requests.encode(_request(data, 1, "bad-1", numeric={"f00": 1.0})),
        "non_finite": requests.encode(_request(data, 2, "bad-2", numeric={
            **_request(data, 2, "x")["numeric"], "f01": math.nan})),
        "oversize": requests.encode(_request(data, 3, "bad-3", metadata={"blob": "x" * 30_000})),
        "time_skew": requests.encode(_request(data, 4, "bad-4", event_time=now + 86_400_000)),
    }
    crafted_labels = {
        "undecodable": b"\x00\x00\x00",
        "invalid_label": labels.encode(_label("r1", label="class_0", value=1.0)),
        "non_finite_label": labels.encode(_label("r2", label=None, value=math.inf)),
        "time_skew": labels.encode(_label("r3", labelled_at=-1)),
        "unknown_class": labels.encode(_label("r4", label="maybe")),
        "wrong_label_kind": labels.encode(_label("r5", label=None, value=2.0)),
        "unknown_request": labels.encode(_label("nobody")),
    }
    good = [requests.encode(_request(data, i, f"r{i}")) for i in range(good_count)]
    mutated_requests = [_mutate(requests.encode(_request(data, 100 + k, f"m{k}")), m)
                        for k, m in enumerate(request_mutations)]
    mutated_labels = [_mutate(labels.encode(_label(f"nolabel{k}")), m) for k, m in enumerate(label_mutations)]

    # One partition each, bad records between good ones: a record's offset is its place here.
    request_sequence = _interleave(good, list(crafted_requests.items()) + [("mutated", v) for v in mutated_requests])
    label_sequence = _interleave([labels.encode(_label(f"r{i}", f"class_{i % 2}")) for i in range(good_count)],
                                 list(crafted_labels.items()) + [("mutated", v) for v in mutated_labels])

    out = make_producer(kafka, **{"message.max.bytes": 4_000_000})
    for _, value in request_sequence:
        out.produce(catalog.requests("m"), value, b"k", partition=0)
    out.flush(10)
    runner = RunningWorker(kafka, registry, data_dir, max_request_bytes=20_000, group_id="hostile-worker")
    with runner, Joiner(kafka, registry, data_dir) as joiner:
        wanted = {f"r{i}" for i in range(good_count)}
        wait_for(lambda: wanted <= {p["request_id"] for p, _ in read_topic(
            kafka, registry, catalog.predictions("m"), "Prediction", 0, settle=0.2)}, timeout=120, every=1)
        for _, value in label_sequence:
            out.produce(catalog.labels, value, b"k", partition=0)
        out.flush(10)
        reader = open_store(StoreSettings(), data_dir)
        wait_for(lambda: len(list(reader.feedback("m", 0, now + 3_600_000))) >= good_count, timeout=60)
        time.sleep(3)          # labels that wait for a prediction: given up on, dead-lettered
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", good_count)
        bad = sum(kind != "good" for kind, _ in request_sequence + label_sequence)
        letters = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", bad)
        assert runner.thread.is_alive() and joiner.thread.is_alive()

    answered = [p["request_id"] for p, _ in predictions]
    for i in range(good_count):
        assert answered.count(f"r{i}") == 1, f"r{i}"
    joined = sorted(f.request_id for f in reader.feedback("m", 0, now + 3_600_000))
    assert joined == sorted(f"r{i}" for i in range(good_count))

    for topic, sequence, serde in ((catalog.requests("m"), request_sequence, requests),
                                   (catalog.labels, label_sequence, labels)):
        by_offset = {}
        for letter, _ in letters:
            if letter["source_topic"] == topic:
                by_offset.setdefault(letter["source_offset"], []).append(letter)
        for offset, (kind, value) in enumerate(sequence):
            dead = by_offset.get(offset, [])
            assert all(d["payload"] == value for d in dead), (topic, offset)
            if kind == "good":
                assert dead == [], (topic, offset)
            elif kind != "mutated":
                assert [d["reason"] for d in dead] == [kind], (topic, offset)
            elif dead == []:       # a mutation that is still a valid record: served like one
                decoded = _decodes(serde, value)
                assert decoded is not None, (topic, offset)
                assert topic != catalog.requests("m") or decoded["request_id"] in answered, (topic, offset)
            else:
                assert len(dead) == 1, (topic, offset, dead)


def _interleave(good: list[bytes], bad: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """(kind, value) in produce order: a good record, a bad one, ... then the bad left over."""
    out = []
    for i, value in enumerate(good):
        out.append(("good", value))
        if i < len(bad):
            out.append(bad[i])
    return out + bad[len(good):]


def _hostile(good_count: int, mutations: int):
    @settings(max_examples=1, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(request_mutations=st.lists(MUTATION, min_size=mutations, max_size=mutations),
           label_mutations=st.lists(MUTATION, min_size=mutations, max_size=mutations))
    def test(kafka, registry, data_dir, make_topics, request_mutations, label_mutations):
        run_corpus(kafka, registry, data_dir, make_topics, good_count, request_mutations, label_mutations)
    return test


test_hostile_corpus_while_good_traffic_flows = _hostile(30, 15)
test_hostile_corpus_soak = pytest.mark.soak(_hostile(500, 500))
