"""The label-based change detector: a pure concept drift in the error stream is found within a
bounded number of labels, a long stationary stream and an improvement raise nothing, and the state
a restart rebuilds from the store's lookback is the state the running trigger had."""
import numpy as np
import pytest
from flywheel.feature_store import FeedbackRecord
from flywheel.processors.trigger.detector import ErrorStream, ErrorStreams, in_label_order
from river.drift import ADWIN

DRIFT_AT = 3000


def _labels(rates: list[tuple[int, float]], seed: int = 0) -> list[FeedbackRecord]:
    """Labelled feedback whose prediction is wrong at the given rate, stretch by stretch; labels 2 s late."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    for n, rate in rates:
        for _ in range(n):
            wrong = rng.random() < rate
            out.append(FeedbackRecord(f"r{i}", "e", "m", "1", i * 10, i * 10, i * 10 + 2000, {}, {}, "a", None, {},
                                      0.9, "b" if wrong else "a"))
            i += 1
    return out


def _first_change(stream: ErrorStream, records: list[FeedbackRecord], chunk: int = 50):
    for k in range(0, len(records), chunk):
        change = stream.feed(records[k:k + chunk])
        if change is not None:
            return change
    return None


def _adwin_fires(records: list[FeedbackRecord]) -> int:
    adwin = ADWIN(delta=0.002)
    for i, r in enumerate(records):
        adwin.update(float(r.true_label != r.predicted_label))
        if adwin.drift_detected:
            return i
    raise AssertionError("river's ADWIN never fired")


@pytest.mark.parametrize("before,after", [(0.05, 0.35), (0.1, 0.3), (0.2, 0.5)])
def test_a_rise_of_the_error_rate_is_found_as_fast_as_rivers_adwin_and_dated(before, after):
    records = _labels([(DRIFT_AT, before), (2000, after)])
    change = _first_change(ErrorStream(0.002), records, chunk=1)
    fired = _adwin_fires(records)
    delay = (change.detected_at - 2000) // 10 - DRIFT_AT
    print(f"\nerror {before} -> {after}: found {delay} labels after the change (river ADWIN alone: "
          f"{fired - DRIFT_AT}), change dated {change.since // 10 - DRIFT_AT:+d} examples from the truth")
    assert delay == fired - DRIFT_AT and 0 <= delay <= 300
    assert change.error_after > change.error_before
    assert abs(change.since // 10 - DRIFT_AT) <= 400


def test_twenty_thousand_stationary_labels_and_an_improvement_raise_nothing():
    assert _first_change(ErrorStream(0.002), _labels([(20_000, 0.1)], seed=3)) is None
    assert _first_change(ErrorStream(0.002), _labels([(DRIFT_AT, 0.3), (3000, 0.05)], seed=4)) is None


def test_state_rebuilt_from_the_lookback_after_a_restart_is_the_running_state():
    records = _labels([(DRIFT_AT, 0.05), (600, 0.35)], seed=5)
    running = ErrorStreams(0.002)
    for k in range(0, len(records), 200):                 # each round feeds what the topic brought
        change = running.observe("m", "1", records[k:k + 200])
    restarted = ErrorStream(0.002).feed(in_label_order(list(reversed(records))))   # rebuilt from the store
    assert change is not None and restarted == change
    assert running.observe("m", "1", []) == change                        # nothing new: the same change
    assert running.observe("m", "2", records) is not None                 # a new live version starts afresh
    assert list(running.streams) == [("m", "2")]


def test_an_abrupt_concept_drift_is_acted_on_after_tens_of_labels_not_hundreds():
    """The error_change rule asks for a retrain within ADWIN's own delay plus `change_min_labels`
    (here 30); the accuracy rule's `min_labels` (200) plays no part."""
    from flywheel.processors.trigger.policy import ModelState, decide
    from flywheel.processors.trigger.settings import TriggerSettings
    settings = TriggerSettings(performance_threshold=0.0, drift_windows=1, new_labels=0, max_age_seconds=0,
                               change_min_labels=30)
    records = _labels([(DRIFT_AT, 0.05), (2000, 0.5)])
    adwin_delay = _adwin_fires(records) - DRIFT_AT
    stream = ErrorStream(settings.change_delta)
    seen = 0
    for r in records:
        seen += 1
        state = ModelState("m", "1", change=stream.feed([r]))
        if decide(state, settings, r.labelled_at).reasons:
            break
    after_drift = seen - DRIFT_AT
    assert decide(state, settings, r.labelled_at).reasons == ["error_change"]
    assert after_drift <= adwin_delay + settings.change_min_labels + 5 and after_drift < 100
    assert abs(state.change.since - records[DRIFT_AT].event_time) <= 200      # dated within 20 labels
