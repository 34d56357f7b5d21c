"""The retrain policy: each reason fires on its own, and cooldown and in-flight suppression hold."""
from dataclasses import replace

import pytest
from flywheel.processors.monitor.performance import Performance
from flywheel.processors.trigger.detector import ChangePoint
from flywheel.processors.trigger.policy import ModelState, decide, hard_example, retrain_request
from flywheel.processors.trigger.settings import TriggerSettings

NOW = 10 * 86_400_000
SETTINGS = TriggerSettings(performance_metric="accuracy", performance_threshold=0.8, min_labels=100,
                           change_min_labels=30, drift_windows=3, new_labels=1000, max_age_seconds=86_400,
                           cooldown_seconds=3600)


def quiet(**changes) -> ModelState:
    """A model that gives no reason to retrain; `changes` add one."""
    state = ModelState("m", "3", live_since_ms=NOW - 3_600_000, flagged_windows=[False, True, False],
                       performance=Performance("classifier", 500, {"accuracy": 0.9}, {"accuracy": 500}),
                       new_labels=10, last_request_ms=None)
    for name, value in changes.items():
        setattr(state, name, value)
    return state


@pytest.mark.parametrize("changes,reason", [
    ({"performance": Performance("classifier", 150, {"accuracy": 0.7}, {"accuracy": 150})}, "performance_threshold"),
    ({"flagged_windows": [False, True, True, True]}, "drift"),
    ({"new_labels": 1000}, "new_labels"),
    ({"live_since_ms": NOW - 86_400_000}, "max_age"),
])
def test_each_reason_fires_alone(changes, reason):
    assert decide(quiet(), SETTINGS, NOW).reasons == []
    decision = decide(quiet(**changes), SETTINGS, NOW)
    assert decision.reasons == [reason] and decision.request


def test_manual_fires_and_skips_cooldown_but_not_in_flight():
    assert decide(quiet(last_request_ms=NOW - 1000), SETTINGS, NOW, manual=True).request
    blocked = decide(quiet(in_flight=True), SETTINGS, NOW, manual=True)
    assert blocked.reasons == ["manual"] and blocked.suppressed_by == "in_flight" and not blocked.request


def test_below_min_labels_or_other_metric_does_not_fire():
    few = Performance("classifier", 99, {"accuracy": 0.1}, {"accuracy": 99})
    assert decide(quiet(performance=few), SETTINGS, NOW).reasons == []
    regressor = Performance("regressor", 500, {"rmse": 9.0}, {"rmse": 500})
    assert decide(quiet(performance=regressor), SETTINGS, NOW).reasons == []
    error_metric = TriggerSettings(performance_metric="rmse", performance_threshold=5.0, min_labels=100)
    assert decide(quiet(performance=regressor), error_metric, NOW).reasons == ["performance_threshold"]


def test_drift_needs_k_consecutive_flagged_windows():
    assert decide(quiet(flagged_windows=[True, True, False, True, True]), SETTINGS, NOW).reasons == []
    assert decide(quiet(flagged_windows=[True, True]), SETTINGS, NOW).reasons == []


def test_cooldown_suppresses_until_it_has_passed():
    drifting = {"flagged_windows": [True] * 3}
    cooling = decide(quiet(last_request_ms=NOW - 3_599_000, **drifting), SETTINGS, NOW)
    assert cooling.reasons == ["drift"] and cooling.suppressed_by == "cooldown" and not cooling.request
    assert decide(quiet(last_request_ms=NOW - 3_600_000, **drifting), SETTINGS, NOW).request


def test_in_flight_suppresses_every_reason():
    decision = decide(quiet(in_flight=True, new_labels=5000, flagged_windows=[True] * 3), SETTINGS, NOW)
    assert decision.reasons == ["drift", "new_labels"] and decision.suppressed_by == "in_flight"


def test_request_carries_reasons_snapshot_and_dataset():
    state = quiet(new_labels=2000)
    request = retrain_request(state, decide(state, SETTINGS, NOW), SETTINGS, NOW)
    assert request["reasons"] == ["new_labels"] and request["base_version"] == "3"
    assert request["metrics"]["new_labels"] == 2000 and request["metrics"]["performance.accuracy"] == 0.9
    assert request["dataset"]["end_time"] == NOW
    assert request["dataset"]["start_time"] == NOW - 30 * 86_400_000
    assert request["dataset"]["hard_example_share"] == 0.2


def test_hard_examples_are_misclassified_or_low_confidence():
    assert hard_example({"true_label": "a", "predicted_label": "b", "confidence": 0.99}, 0.6)
    assert hard_example({"true_label": "a", "predicted_label": "a", "confidence": 0.55}, 0.6)
    assert not hard_example({"true_label": "a", "predicted_label": "a", "confidence": 0.9}, 0.6)
    assert not hard_example({"true_value": 1.0, "predicted_value": 3.0, "confidence": None}, 0.6)


def test_a_rise_of_the_error_stream_asks_for_data_from_the_change_on_once_enough_labels_came():
    change = ChangePoint(detected_at=NOW - 60_000, since=NOW - 120_000, labels=29, error_before=0.05, error_after=0.35)
    assert decide(quiet(change=change), SETTINGS, NOW).reasons == []          # 29 < change_min_labels (30)
    enough = quiet(change=replace(change, labels=30))                         # not min_labels (100)
    decision = decide(enough, SETTINGS, NOW)
    assert decision.reasons == ["error_change"]
    assert decision.metrics["change.error_after"] == 0.35 and decision.metrics["change.labels"] == 30
    assert decision.metrics["change.detected_at"] == NOW - 60_000 and decision.metrics["change.since"] == NOW - 120_000
    request = retrain_request(enough, decision, SETTINGS, NOW)
    assert request["dataset"]["start_time"] == NOW - 120_000 and request["dataset"]["end_time"] == NOW
    assert decide(enough, replace(SETTINGS, change_delta=0.0), NOW).reasons == []      # switched off
    acted_on = quiet(change=replace(change, labels=30), last_request_ms=NOW - 60_000)
    assert decide(acted_on, SETTINGS, NOW).reasons == []          # found before the last request


def test_a_drift_request_asks_for_data_from_the_first_flagged_window_on():
    state = quiet(flagged_windows=[False, True, True, True], flagged_since=NOW - 180_000)
    request = retrain_request(state, decide(state, SETTINGS, NOW), SETTINGS, NOW)
    assert request["reasons"] == ["drift"] and request["dataset"]["start_time"] == NOW - 180_000
    assert request["metrics"]["drift.since"] == NOW - 180_000 and request["metrics"]["flagged_windows"] == 3
