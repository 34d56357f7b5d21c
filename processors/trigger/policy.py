"""The retrain policy: given what is known about a model now, should a retrain be requested?

Reasons, each the name of its rule (any one suffices):
- performance_threshold: the live version's `performance_metric` over its recent labelled feedback
  is worse than `performance_threshold`, on at least `min_labels` examples;
- error_change: the live version's labelled error stream rose (ADWIN at confidence `change_delta`,
  see detector.py) and `change_min_labels` labels have come in since the estimated change, enough
  to train on: its own minimum, so that an abrupt change is acted on after tens of labels, not
  after the hundreds the threshold's figure needs. The request then asks for data from the change
  on only: a candidate trained on the old concept's rows as well would learn the mix;
- drift: the last `drift_windows` judged monitor windows of the live version were all flagged; the
  request asks for data from the first of the flagged run on (what the version will serve next);
- new_labels: at least `new_labels` labelled examples arrived since the last request (or since the
  version went live);
- max_age: the live version has been live longer than `max_age_seconds`;
- manual: a person asked (`flywheel retrain`).
Suppression: nothing while a request is in flight; automatic reasons wait out `cooldown_seconds`
after the last request (a manual request does not).
"""
import uuid
from dataclasses import dataclass, field

from flywheel.processors.models.manifest import Lineage
from flywheel.processors.monitor.performance import Performance
from flywheel.processors.trigger.detector import ChangePoint
from flywheel.processors.trigger.settings import TriggerSettings

LOWER_IS_BETTER = frozenset({"mae", "rmse", "log_loss", "calibration_error"})
REASONS = ("performance_threshold", "error_change", "drift", "new_labels", "max_age", "manual")


@dataclass
class ModelState:
    """What the trigger knows about one model at one moment."""
    model: str
    live_version: str | None = None
    live_since_ms: int | None = None
    flagged_windows: list[bool] = field(default_factory=list)     # judged windows, oldest first
    flagged_since: int | None = None        # start of the first window of the trailing flagged run
    performance: Performance | None = None
    change: ChangePoint | None = None       # the latest rise of the live version's error
    new_labels: int = 0
    hard_examples: int = 0                  # misclassified or low-confidence, over the lookback
    last_request_ms: int | None = None
    in_flight: bool = False


@dataclass
class Decision:
    reasons: list[str]
    suppressed_by: str | None = None        # in_flight | cooldown
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def request(self) -> bool:
        return bool(self.reasons) and self.suppressed_by is None


def decide(state: ModelState, settings: TriggerSettings, now_ms: int, manual: bool = False) -> Decision:
    decision = Decision(_reasons(state, settings, now_ms) + (["manual"] if manual else []),
                        metrics=snapshot(state, now_ms))
    if not decision.reasons:
        return decision
    if state.in_flight:
        decision.suppressed_by = "in_flight"
    elif not manual and _cooling(state, settings, now_ms):
        decision.suppressed_by = "cooldown"
    return decision


def _reasons(state: ModelState, settings: TriggerSettings, now_ms: int) -> list[str]:
    reasons = []
    if _performance_poor(state.performance, settings):
        reasons.append("performance_threshold")
    if changed(state, settings):
        reasons.append("error_change")
    if _drifted(state, settings):
        reasons.append("drift")
    if settings.new_labels > 0 and state.new_labels >= settings.new_labels:
        reasons.append("new_labels")
    if (settings.max_age_seconds > 0 and state.live_since_ms is not None
            and now_ms - state.live_since_ms >= settings.max_age_seconds * 1000):
        reasons.append("max_age")
    return reasons


def _performance_poor(performance: Performance | None, settings: TriggerSettings) -> bool:
    metric, threshold = settings.performance_metric, settings.performance_threshold
    if not performance or not threshold or metric not in performance.metrics:
        return False
    if performance.counts.get(metric, performance.count) < settings.min_labels:
        return False
    value = performance.metrics[metric]
    return value > threshold if metric in LOWER_IS_BETTER else value < threshold


def _drifted(state: ModelState, settings: TriggerSettings) -> bool:
    k = settings.drift_windows
    return k > 0 and len(state.flagged_windows) >= k and all(state.flagged_windows[-k:])


def changed(state: ModelState, settings: TriggerSettings) -> bool:
    """The error stream rose after the last request, and enough labels have come in since to train
    on the new concept (a change found before the last request was acted on, or overtaken)."""
    change = state.change
    return (bool(settings.change_delta) and change is not None and change.labels >= settings.change_min_labels
            and (state.last_request_ms is None or change.detected_at > state.last_request_ms))


def _cooling(state: ModelState, settings: TriggerSettings, now_ms: int) -> bool:
    return state.last_request_ms is not None and now_ms - state.last_request_ms < settings.cooldown_seconds * 1000


def snapshot(state: ModelState, now_ms: int) -> dict[str, float]:
    """The figures behind a decision, as they go into RetrainRequested.metrics (every key is
    documented in docs/concepts/loop.md, "Why a retrain was requested")."""
    out: dict[str, float] = {"new_labels": state.new_labels, "hard_examples": state.hard_examples,
                             "flagged_windows": float(sum(state.flagged_windows))}
    if state.live_since_ms is not None:
        out["model_age_seconds"] = (now_ms - state.live_since_ms) / 1000
    if state.flagged_since is not None:
        out["drift.since"] = state.flagged_since
    if state.change is not None:
        out.update({"change.labels": state.change.labels, "change.error_before": state.change.error_before,
                    "change.error_after": state.change.error_after, "change.since": state.change.since,
                    "change.detected_at": state.change.detected_at})
    if state.performance:
        out["labelled"] = state.performance.count
        out.update({f"performance.{k}": v for k, v in state.performance.metrics.items()})
    return out


def hard_example(record: dict, low_confidence: float) -> bool:
    """A labelled example worth training on harder: misclassified, or predicted with low confidence."""
    if record.get("true_label") is not None and record.get("true_label") != record.get("predicted_label"):
        return True
    confidence = record.get("confidence")
    return confidence is not None and confidence < low_confidence


def retrain_request(state: ModelState, decision: Decision, settings: TriggerSettings, now_ms: int,
                    requested_by: str = "trigger") -> dict:
    """The RetrainRequested record (schemas/avro/RetrainRequested.avsc) for a decision."""
    start = now_ms - int(settings.dataset_seconds * 1000)
    if "error_change" in decision.reasons:
        start = max(start, state.change.since)
    if "drift" in decision.reasons and state.flagged_since is not None:
        start = max(start, state.flagged_since)
    return {
        "retrain_id": uuid.uuid4().hex,
        "model": state.model,
        "base_version": state.live_version,
        "requested_at": now_ms,
        "requested_by": requested_by,
        "reasons": list(decision.reasons),
        "metrics": {k: float(v) for k, v in decision.metrics.items()},
        "dataset": {"start_time": start, "end_time": now_ms,
                    "hard_example_share": settings.hard_example_share,
                    "holdout_share": settings.holdout_share},
    }


def reproduction_request(model: str, base_version: str | None, lineage: Lineage, now_ms: int,
                         requested_by: str = "cli") -> dict:
    """A manual request for the dataset a version's lineage records (its range and shares): while
    the store still holds those rows, the retrain exports the same rows, with the same hash."""
    return {
        "retrain_id": uuid.uuid4().hex, "model": model, "base_version": base_version, "requested_at": now_ms,
        "requested_by": requested_by, "reasons": ["manual"], "metrics": {},
        "dataset": {"start_time": lineage.data_start, "end_time": lineage.data_end,
                    "hard_example_share": lineage.hard_example_share, "holdout_share": lineage.holdout_share},
    }
