"""Checks at the joiner's edge (issue 12, items 2 and 4): a label's time within the configured
skew of now, a label value finite and one of the model's classes. Each refusal is one dead letter
with its own reason and the original bytes; the good labels around them are joined."""
import math
import time

from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.joiner.process import FeedbackJoiner
from flywheel.processors.joiner.settings import JoinerSettings

from tests.test_joiner_process import T0, Topics, _label, _prediction, _run_until


def test_each_refused_label_is_one_dead_letter_with_its_reason(kafka, registry, data_dir, make_topics):
    topics = Topics(kafka, registry, make_topics("m"))
    store = open_store(StoreSettings(), data_dir)
    joiner = FeedbackJoiner(kafka, registry, store, JoinerSettings(early_label_wait_seconds=1.0, group_id="edges"),
                            instance="t")
    regressed = dict(_prediction(7), label=None, value=3.0, scores={}, confidence=None)
    topics.predictions([_prediction(i) for i in range(1, 6)] + [regressed])
    now = int(time.time() * 1000)
    bad = {
        "time_skew": [_label(1, at=-1_000), _label(2, at=now + 3_600_000)],   # before 1970; an hour ahead
        "non_finite_label": [dict(_label(7), label=None, value=math.nan), dict(_label(7), label=None, value=-math.inf)],
        "unknown_class": [_label(3, "maybe")],
        "wrong_label_kind": [dict(_label(5), label=None, value=1.0), _label(7, "yes")],
    }
    good = [_label(4), _label(5, "no"), dict(_label(7), label=None, value=2.5)]
    topics.labels([bad["time_skew"][0], good[0], bad["non_finite_label"][0], bad["unknown_class"][0],
                   *bad["wrong_label_kind"], good[1], bad["time_skew"][1], bad["non_finite_label"][1], good[2]])
    _run_until(joiner, lambda: len(list(store.feedback("m", T0 - 1, T0 + 3_600_000))) == 3)
    joiner.step()                       # the batch in hand is committed: its dead letters are visible
    letters = topics.read(topics.catalog.deadletter, "DeadLetter", 7)
    joiner.close()

    assert sorted(f.request_id for f in store.feedback("m", T0 - 1, T0 + 3_600_000)) == ["r4", "r5", "r7"]
    assert sorted(d["reason"] for d, _ in letters) == sorted(r for r, records in bad.items() for _ in records)
    label = topics.serde["GroundTruth"]
    for reason, records in bad.items():
        payloads = sorted((label.decode(d["payload"])["request_id"], str(label.decode(d["payload"])["value"]))
                          for d, _ in letters if d["reason"] == reason)
        assert payloads == sorted((r["request_id"], str(r["value"])) for r in records), reason
    detail = {d["reason"]: d["detail"] for d, _ in letters}
    assert "'maybe'" in detail["unknown_class"] and "['no', 'yes']" in detail["unknown_class"]


def test_broken_predictions_are_dead_letters_and_the_rest_are_stored_as_written(kafka, registry, data_dir,
                                                                                make_topics):
    """Predictions are decoded a batch at a time (columns, fastavro for the rest): a broken one is
    one dead letter with its bytes, and the good ones around it are stored whole and in order
    (the later of two answers by one version replaces the earlier)."""
    topics = Topics(kafka, registry, make_topics("m"))
    store = open_store(StoreSettings(), data_dir)
    joiner = FeedbackJoiner(kafka, registry, store, JoinerSettings(group_id="broken"), instance="t")
    serde, topic = topics.serde["Prediction"], topics.catalog.predictions("m")
    enriched = dict(_prediction(1), feature_sources={"x": "online:g"}, flags=["low_confidence"])
    fields = {"role": "LIVE", "value": None, "flags": [], "categorical": {}, "feature_sources": {},
              "inference_us": 5, "batch_size": 1}
    good = [{**fields, **_prediction(i)} for i in (2, 3)] + [{**fields, **enriched}]
    again = dict(good[0], label="no", scores={"yes": 0.1, "no": 0.9}, confidence=0.9)    # r2 answered again
    broken = [serde.encode(good[1])[:-3], b"\xff not avro", b"\x00\x00\x00\x7f\x01" + serde.encode(good[1])[5:]]
    for value in [serde.encode(good[0]), broken[0], serde.encode(good[1]), broken[1], serde.encode(good[2]),
                  broken[2], serde.encode(again)]:
        topics.producer.produce(topic, value, b"k")        # one partition: one batch, in this order
    topics.producer.flush(10)
    _run_until(joiner, lambda: len(store.get_predictions(["r1", "r2", "r3"])) == 3)
    joiner.step()
    letters = topics.read(topics.catalog.deadletter, "DeadLetter", 3)
    joiner.close()

    assert sorted(d["payload"] for d, _ in letters) == sorted(broken)
    assert {d["reason"] for d, _ in letters} <= {"undecodable", "unknown_schema"} and len(letters) == 3
    stored = {rid: ps[0] for rid, ps in store.get_predictions(["r1", "r2", "r3"]).items()}
    assert (stored["r1"].feature_sources, stored["r1"].flags) == ({"x": "online:g"}, ["low_confidence"])
    assert (stored["r2"].label, stored["r2"].scores) == ("no", {"yes": 0.1, "no": 0.9})
    assert (stored["r3"].numeric, stored["r3"].predicted_at) == ({"x": 3.0}, T0 + 13)
