"""Every dead-letter reason from a crafted input, all on one partition between good records:
each bad record becomes exactly one DeadLetter with its reason and original bytes, and the
partition moves on (the good records after it are answered)."""
import math
import struct

import numpy as np
from flywheel.schemas import AvroSerde
from flywheel.streams.clients import make_producer

from tests.test_worker_support import RunningWorker, read_topic, register, small_model

CATS = (("seg", ("a", "b")),)


def _request(data, i, **changes) -> dict:
    row = data.rows(i, i + 1)[0]
    numeric = {k: v for k, v in row.items() if not isinstance(v, str)}
    categorical = {k: v for k, v in row.items() if isinstance(v, str)}
    record = {"request_id": f"r{i}", "entity_id": "same-entity", "model": "m", "event_time": 1,
              "numeric": numeric, "categorical": categorical, "dense": None, "metadata": {}}
    for key, value in changes.items():
        record[key] = value(record) if callable(value) else value
    return record


def test_each_reason_once_and_the_partition_moves_on(kafka, registry, data_dir, make_topics):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", categories=CATS)
    _, _, data = small_model(categories=CATS)
    serde = AvroSerde(registry, "InferenceRequest")
    names = [f"f{i:02d}" for i in range(8)]
    dense_ok = np.asarray([data.numeric[5]], dtype="<f4").tobytes()

    def without(name):
        return lambda r: {k: v for k, v in r["numeric"].items() if k != name}

    bad = {
        "undecodable": b"\xff\xfe not avro",
        "unknown_schema": struct.pack(">bI", 0, 987654) + b"\x00" * 20,
        "missing_feature": serde.encode(_request(data, 1, numeric=without("f03"))),
        "non_finite": serde.encode(_request(data, 2, numeric=lambda r: {**r["numeric"], "f01": math.inf})),
        "wrong_type": serde.encode(_request(data, 3, numeric=without("f02"),
                                            categorical=lambda r: {**r["categorical"], "f02": "abc"})),
        "oversize": serde.encode(_request(data, 4, metadata={"blob": "x" * 5000})),
        "unseen_category": serde.encode(_request(data, 6, categorical={"seg": "never-seen"})),
        "wrong_shape": serde.encode(_request(data, 7, numeric={}, dense=dense_ok[:-4])),
        "time_skew": serde.encode(_request(data, 8, event_time=-5)),
    }
    good = [serde.encode(_request(data, 10 + i)) for i in range(len(bad))]
    good.append(serde.encode(_request(data, 5, numeric={}, dense=dense_ok)))  # the dense fast path
    out = make_producer(kafka)
    topic = catalog.requests("m")
    sequence = [good[0]] + [v for pair in zip(bad.values(), good[1:]) for v in pair]
    for value in sequence:
        out.produce(topic, value, b"same-entity", partition=0)
    out.flush(10)

    with RunningWorker(kafka, registry, data_dir, max_request_bytes=2000) as worker:
        letters = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", len(bad))
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", len(good))
    by_reason = {}
    for letter, _ in letters:
        by_reason.setdefault(letter["reason"], []).append(letter)
    assert sorted(by_reason) == sorted(bad) and all(len(v) == 1 for v in by_reason.values())
    for reason, (letter,) in by_reason.items():
        assert letter["payload"] == bad[reason], reason
        assert (letter["source_topic"], letter["source_partition"], letter["processor"]) == (topic, 0, "worker")
        assert letter["source_offset"] == sequence.index(bad[reason])
    assert "f03" in by_reason["missing_feature"][0]["detail"]
    assert sorted(p["request_id"] for p, _ in predictions) == sorted(["r5"] + [f"r{10 + i}" for i in range(len(bad))])
    dense = next(p for p, _ in predictions if p["request_id"] == "r5")
    assert dense["numeric"] == {n: float(np.float32(v)) for n, v in zip(names, data.numeric[5])}
    assert worker.metrics.dead_letters.labels("worker", "wrong_shape")._value.get() == 1


def test_unseen_category_goes_to_the_declared_unknown_bucket(kafka, registry, data_dir, make_topics):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", categories=CATS, unknown_bucket="other")
    _, _, data = small_model(categories=CATS, unknown_bucket="other")
    serde = AvroSerde(registry, "InferenceRequest")
    out = make_producer(kafka)
    out.produce(catalog.requests("m"), serde.encode(_request(data, 1, categorical={"seg": "never-seen"})), b"k")
    out.flush(10)
    with RunningWorker(kafka, registry, data_dir):
        (prediction, _), = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 1)
    assert prediction["request_id"] == "r1" and prediction["categorical"] == {"seg": "never-seen"}
    assert read_topic(kafka, registry, catalog.deadletter, "DeadLetter", 0, settle=0.3) == []
