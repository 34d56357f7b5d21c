"""What `flywheel up --demo` sets up: the story's timings, scaled by --speed, handed to every
processor as FLYWHEEL_* settings (a setting already in the environment wins)."""
import os
from dataclasses import dataclass, replace

from flywheel.schemas.setting import setting


@dataclass
class DemoSettings:
    """TOML [demo], env FLYWHEEL_DEMO_<FIELD>, `flywheel up --demo` flags."""
    model: str = setting("churn", doc="the demo's model")
    speed: float = setting(1.0, unit="story s per s", min=0.001, doc="story seconds per real second")
    rate: float = setting(150.0, unit="requests/s", min=0, doc="requests per real second")
    drift_at: float = setting(300.0, unit="story s", doc="when the concept drifts; negative: never")
    window: float = setting(60.0, unit="story s", min=1, doc="the monitor's window")
    label_delay: float = setting(30.0, unit="story s", min=0, doc="mean delay of a label")

    def resumed(self, events: list[dict]) -> "DemoSettings":
        """The story as it continues on a data dir that has seen it: once the retrainer has
        registered a version of the demo model, the drift it was trained on has happened, and a
        restarted simulator starts drifted. Replaying the story from the start would send
        pre-drift traffic that the promoted model reads as drift, and retrain it away again."""
        past_drift = any(e["kind"] == "REGISTERED" and e.get("actor") == "retrainer" for e in events)
        return replace(self, drift_at=0.0) if past_drift and self.drift_at >= 0 else self

    def env(self) -> dict[str, str]:
        story = {  # durations in story seconds
            "FLYWHEEL_MONITOR_WINDOW_SECONDS": self.window,
            "FLYWHEEL_MONITOR_ALLOWED_LATENESS_SECONDS": self.window / 4,
            "FLYWHEEL_MONITOR_IDLE_SECONDS": self.window / 2,
            "FLYWHEEL_MONITOR_REFERENCE_REFRESH_SECONDS": 10,
            "FLYWHEEL_TRIGGER_INTERVAL_SECONDS": 10,
            "FLYWHEEL_TRIGGER_LOOKBACK_SECONDS": 4 * self.window,  # must hold drift_windows windows
            "FLYWHEEL_TRIGGER_DATASET_SECONDS": 2 * self.window,
            "FLYWHEEL_TRIGGER_COOLDOWN_SECONDS": 4 * self.window,
            "FLYWHEEL_ROLLOUT_INTERVAL_SECONDS": 5,
        }
        plain = {
            "FLYWHEEL_TRIGGER_DRIFT_WINDOWS": 3,
            # Drift, not accuracy, triggers the demo's retrain: at the moment accuracy drops, most
            # post-drift requests are not labelled yet, so a dataset taken then would be mostly
            # pre-drift. Three flagged windows later (the first may straddle the drift) the
            # requested two windows are all post-drift.
            "FLYWHEEL_TRIGGER_PERFORMANCE_THRESHOLD": 0,
            # The demo tells the feature-drift story; the label-based change detector would answer
            # its concept drift first (benchmarks/bench_drift.py measures it on standard streams).
            "FLYWHEEL_TRIGGER_CHANGE_DELTA": 0,
            "FLYWHEEL_TRIGGER_NEW_LABELS": 0,
            "FLYWHEEL_TRIGGER_MAX_AGE_SECONDS": 0,
            "FLYWHEEL_ROLLOUT_MIN_LABELS": 150,
            "FLYWHEEL_ROLLOUT_MAX_LABELS": 1500,
            "FLYWHEEL_RETRAINER_CANARY_SHARE": 0.3,
            "FLYWHEEL_SIMULATOR_MODEL": self.model,
            "FLYWHEEL_SIMULATOR_RATE": self.rate,
            "FLYWHEEL_SIMULATOR_DRIFT_AT": self.drift_at,
            "FLYWHEEL_SIMULATOR_LABEL_DELAY_MEAN": self.label_delay,
            "FLYWHEEL_SIMULATOR_SPEED": self.speed,
        }
        wanted = {**{k: v / self.speed for k, v in story.items()}, **plain}
        return {k: str(v) for k, v in wanted.items() if k not in os.environ}
