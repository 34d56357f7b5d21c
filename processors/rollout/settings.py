"""Rollout settings: TOML [rollout], env FLYWHEEL_ROLLOUT_<FIELD>."""
from dataclasses import dataclass

from flywheel.schemas.setting import setting


@dataclass
class RolloutSettings:
    """TOML [rollout], env FLYWHEEL_ROLLOUT_<FIELD>: when a canary is promoted or rolled back."""
    min_labels: int = setting(200, unit="labels", min=1, doc="labels per version before any decision")
    max_labels: int = setting(2000, unit="labels", min=1, doc="labels per version: undecided by then means roll back")
    p_value: float = setting(0.01, unit="probability", min=0, max=1,
                             doc="two-sided significance for a decision before max_labels")
    interval_seconds: float = setting(5.0, unit="s", min=0.01, doc="how often every canary is judged")
    lookback_seconds: float = setting(7 * 86_400.0, unit="s", min=1, doc="feedback a judgement reads at most")
    instances: int = setting(1, unit="processes", min=1,
                             doc="processes `flywheel up` runs; one decides for each model, the others stand by")
