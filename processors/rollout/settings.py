"""Rollout settings: TOML [rollout], env FLYWHEEL_ROLLOUT_<FIELD>; a model's own approval mode in
[rollout.models.<model>] (env FLYWHEEL_ROLLOUT_MODELS, the same tables as JSON)."""
from dataclasses import dataclass

from flywheel.schemas.setting import per_model, setting

APPROVALS = ("auto", "manual")


@dataclass
class RolloutSettings:
    """TOML [rollout], env FLYWHEEL_ROLLOUT_<FIELD>: when a canary is promoted or rolled back."""
    min_labels: int = setting(200, unit="labels", min=1, doc="labels per version before any decision")
    max_labels: int = setting(2000, unit="labels", min=1, doc="labels per version: undecided by then means roll back")
    p_value: float = setting(0.01, unit="probability", min=0, max=1,
                             doc="two-sided significance for a decision before max_labels")
    interval_seconds: float = setting(5.0, unit="s", min=0.01, doc="how often every canary is judged")
    lookback_seconds: float = setting(7 * 86_400.0, unit="s", min=1, doc="feedback a judgement reads at most")
    approval: str = setting("auto", choices=APPROVALS,
                            doc="auto: a canary that passes its live evidence is promoted; manual: it waits "
                                "for `flywheel models approve` or `reject` (a failing one is still rolled back)")
    models: dict[str, dict] = per_model(
        "approval", doc="per-model overrides, one table each: [rollout.models.churn] approval = \"manual\"")
    instances: int = setting(1, unit="processes", min=1,
                             doc="processes `flywheel up` runs; one decides for each model, the others stand by")
