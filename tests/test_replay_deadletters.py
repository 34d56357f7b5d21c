"""Dead-letter re-drive against the real embedded broker: what passes now goes home with its
key and headers, what still fails stays dead with its new reason, and the counts add up."""
import collections
import json
import time

import numpy as np
from flywheel.processors.models import ModelRegistry
from flywheel.processors.training import train
from flywheel.schemas import AvroSerde
from flywheel.schemas.features import Feature, FeatureSpec
from flywheel.streams.clients import make_producer
from flywheel.streams.replay import Checkpoints, ReplayOptions, TimeRange
from flywheel.streams.replay.deadletter import DeadLetterFilter, dead_letter_redrive
from flywheel.streams.replay.headers import ORIGIN, REDRIVE

from flywheel.cli import main
from tests.replay_helpers import header, read_all

SPEC = FeatureSpec((Feature("x"),))


def validate(record_name: str, record: dict) -> None:
    if record_name == "InferenceRequest":
        SPEC.check(record["numeric"], record["categorical"])


def request(registry, n: int, **numeric) -> bytes:
    return AvroSerde(registry, "InferenceRequest").encode(
        {"request_id": f"r{n}", "entity_id": f"e{n}", "model": "m", "event_time": 1_000 + n,
         "numeric": numeric, "categorical": {}, "dense": None, "metadata": {}})


def dead_letter(catalog, n: int, payload: bytes, reason: str, processor: str = "worker",
                topic: str | None = None) -> dict:
    return {"reason": reason, "detail": "", "processor": processor,
            "source_topic": topic or catalog.requests("m"), "source_partition": n % 4, "source_offset": n,
            "source_timestamp": 5_000 + n, "key": f"e{n}".encode(), "payload": payload,
            "headers": {"trace": f"t{n}".encode()}, "failed_at": int(time.time() * 1000), "attempt": 1}


def write_dead_letters(kafka, registry, catalog) -> dict[str, list[dict]]:
    fixed = [dead_letter(catalog, n, request(registry, n, x=float(n)), "unseen_category") for n in range(12)]
    broken = [dead_letter(catalog, n, b"\x07garbage", "undecodable") for n in range(12, 17)]
    still_bad = [dead_letter(catalog, n, request(registry, n, y=1.0), "missing_feature") for n in range(17, 20)]
    other = [dead_letter(catalog, n, b"label", "late_label", processor="joiner", topic=catalog.labels)
             for n in range(20, 24)]
    serde = AvroSerde(registry, "DeadLetter")
    producer = make_producer(kafka)
    for record in fixed + broken + still_bad + other:
        producer.produce(catalog.deadletter, serde.encode(record), key=record["key"])
    producer.produce(catalog.deadletter, b"not a dead letter at all")
    producer.flush()
    return {"fixed": fixed, "broken": broken, "still_bad": still_bad, "other": other}


def test_fixed_dead_letters_go_home_and_the_rest_stay_dead(kafka, registry, make_topics, data_dir):
    catalog = make_topics("m")
    written = write_dead_letters(kafka, registry, catalog)
    window = TimeRange(0, int(time.time() * 1000) + 1)
    checkpoints = Checkpoints.in_data_dir(data_dir)
    selection = DeadLetterFilter(processors=frozenset({"worker"}))

    dry = dead_letter_redrive(kafka, registry, checkpoints, "dry", window, selection, validate,
                              ReplayOptions(dry_run=True)).run()
    assert dry.totals() == {"redriven": 12, "still_dead": 8, "not_selected": 4, "unreadable": 1}
    assert read_all(kafka, catalog.requests("m"), idle=0.6) == []

    report = dead_letter_redrive(kafka, registry, checkpoints, "fix-1", window, selection, validate).run()
    assert report.totals() == dry.totals()

    home = read_all(kafka, catalog.requests("m"))
    assert sorted(m.key() for m in home) == sorted(d["key"] for d in written["fixed"])
    by_key = {d["key"]: d for d in written["fixed"]}
    for m in home:
        original = by_key[m.key()]
        assert m.value() == original["payload"]
        assert (m.partition(), m.timestamp()[1]) == (original["source_partition"], original["source_timestamp"])
        assert header(m, "trace") == original["headers"]["trace"]
        assert header(m, REDRIVE) == b"fix-1" and header(m, ORIGIN).startswith(catalog.deadletter.encode())

    serde = AvroSerde(registry, "DeadLetter")
    dead = [serde.decode(m.value()) for m in read_all(kafka, catalog.deadletter) if header(m, REDRIVE) == b"fix-1"]
    assert collections.Counter(d["reason"] for d in dead) == {"undecodable": 5, "missing_feature": 3}
    assert {(d["attempt"], d["processor"]) for d in dead} == {(2, "replay")}
    assert sorted(d["payload"] for d in dead) == sorted(d["payload"] for d in written["broken"] + written["still_bad"])

    # A later run skips what fix-1 handled and retries only the new dead letters (attempt 2 -> 3).
    again = dead_letter_redrive(kafka, registry, checkpoints, "fix-2", TimeRange(0, int(time.time() * 1000) + 1),
                                DeadLetterFilter(processors=frozenset({"worker", "replay"})), validate).run()
    assert again.totals() == {"already_handled": 20, "still_dead": 8, "not_selected": 4, "unreadable": 1}
    third = [serde.decode(m.value()) for m in read_all(kafka, catalog.deadletter) if header(m, REDRIVE) == b"fix-2"]
    assert {d["attempt"] for d in third} == {3}
    assert len(read_all(kafka, catalog.requests("m"), idle=0.6)) == 12  # nothing re-driven twice


def test_reason_filter_and_decode_only_validation(kafka, registry, make_topics, data_dir):
    catalog = make_topics("m")
    write_dead_letters(kafka, registry, catalog)
    window = TimeRange(0, int(time.time() * 1000) + 1)
    report = dead_letter_redrive(kafka, registry, Checkpoints.in_data_dir(data_dir), "by-reason", window,
                                 DeadLetterFilter(reasons=frozenset({"missing_feature", "late_label"}))).run()
    # Without a feature spec only decoding is checked: the requests now pass, and labels that
    # decode as GroundTruth would too, but b"label" does not.
    assert report.totals() == {"redriven": 3, "still_dead": 4, "not_selected": 17, "unreadable": 1}


def test_cli_checks_requests_against_the_live_versions_feature_spec(kafka, registry, make_topics, config, capsys):
    catalog = make_topics("m")
    models = ModelRegistry(kafka, registry, config.data_dir)
    x = np.random.default_rng(0).normal(size=(200, 1)).astype(np.float32)
    trained = train("m", "v1", x, (x[:, 0] > 0).astype(int), SPEC, kind="gbt", n_estimators=3, max_depth=1)
    models.register(trained.onnx_bytes, trained.manifest)   # register test-loads it: a real model
    write_dead_letters(kafka, registry, catalog)
    code = main(["--bootstrap", kafka.bootstrap_servers, "--topic-prefix", kafka.topic_prefix,
                 "--data-dir", str(config.data_dir), "replay", "dead-letters", "--processor", "worker",
                 "--run-id", "cli", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"] == {"redriven": 12, "still_dead": 8, "not_selected": 4, "unreadable": 1}
    serde = AvroSerde(registry, "DeadLetter")
    reasons = collections.Counter(serde.decode(m.value())["reason"] for m in read_all(kafka, catalog.deadletter)
                                  if header(m, REDRIVE) == b"cli")
    assert reasons == {"undecodable": 5, "missing_feature": 3}
