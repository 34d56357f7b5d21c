"""Trigger settings: TOML [trigger], env FLYWHEEL_TRIGGER_<FIELD>. A threshold of 0 switches its rule off."""
from dataclasses import dataclass

from flywheel.schemas.setting import per_model, setting

# What a model may set for itself: its rules' thresholds, not what shapes the process (the
# tallies' lookback and detector, the interval).
PER_MODEL = ("performance_metric", "performance_threshold", "min_labels", "change_min_labels", "drift_windows",
             "new_labels", "max_age_seconds", "cooldown_seconds")
METRICS = ("accuracy", "precision", "recall", "f1", "log_loss", "calibration_error", "mae", "rmse")


@dataclass
class TriggerSettings:
    """TOML [trigger], env FLYWHEEL_TRIGGER_<FIELD>: when a retrain is requested. A threshold of 0
    switches its rule off."""
    performance_metric: str = setting("accuracy", choices=METRICS,
                                      doc="live figure the performance rule watches")
    performance_threshold: float = setting(0.8, unit="metric value", min=0,
                                           doc="worse than this (below; above for error metrics) fires")
    min_labels: int = setting(200, unit="labels", min=0,
                              doc="labelled examples the performance threshold needs before it counts")
    change_delta: float = setting(0.002, unit="confidence", min=0, max=1,
                                  doc="ADWIN's confidence on the error stream; 0: no change detection")
    change_min_labels: int = setting(150, unit="labels", min=1,
                                     doc="labels after a detected rise of the error before its retrain is "
                                         "requested: the rows the candidate trains on (detection itself "
                                         "does not wait for them)")
    drift_windows: int = setting(3, unit="windows", min=1, doc="consecutive flagged monitor windows that fire")
    new_labels: int = setting(10_000, unit="labels", min=0, doc="labels since the last request that fire")
    max_age_seconds: float = setting(7 * 86_400.0, unit="s", min=0, doc="a live version older than this fires")
    cooldown_seconds: float = setting(3_600.0, unit="s", min=0, doc="automatic reasons wait this long after "
                                                                    "the last request")
    in_flight_timeout_seconds: float = setting(6 * 3_600.0, unit="s", min=0,
                                               doc="a request older than this counts as failed")
    lookback_seconds: float = setting(86_400.0, unit="s", min=1,
                                      doc="feedback window the performance figure is taken over (to "
                                          "1/1440 of itself, at least a second)")
    dataset_seconds: float = setting(30 * 86_400.0, unit="s", min=1,
                                     doc="time range of feedback the retrainer should use")
    hard_example_share: float = setting(0.2, unit="share", min=0, max=1,
                                        doc="share of the dataset given to hard examples (wrong or low-confidence)")
    low_confidence: float = setting(0.6, unit="probability", min=0, max=1,
                                    doc="below this a prediction counts as a hard example")
    holdout_share: float = setting(0.2, unit="share", min=0, max=1,
                                   doc="share of the dataset held out to compare candidate and incumbent")
    interval_seconds: float = setting(10.0, unit="s", min=0.01,
                                      doc="how often the trigger evaluates every model; an error change found, "
                                          "or come to `change_min_labels`, is evaluated within a second")
    models: dict[str, dict] = per_model(
        *PER_MODEL, doc="per-model overrides of the rules, one table each: [trigger.models.fraud] "
                        "performance_threshold = 0.95; the process-wide settings (lookback, interval, ...) are not")
    instances: int = setting(1, unit="processes", min=1,
                             doc="processes `flywheel up` runs; one decides for each model, the others stand by")
