"""Simulator settings: TOML [simulator], env FLYWHEEL_SIMULATOR_<FIELD>."""
from dataclasses import dataclass

from flywheel.schemas.setting import setting


@dataclass
class SimulatorSettings:
    """TOML [simulator], env FLYWHEEL_SIMULATOR_<FIELD>: the demo's traffic and labels."""
    model: str = setting("churn", doc="model the requests are for")
    rate: float = setting(100.0, unit="requests/s", min=0, doc="requests per real second")
    drift_at: float = setting(600.0, unit="story s", doc="when the concept drifts, after start; negative: never")
    label_delay_mean: float = setting(60.0, unit="story s", min=0, doc="mean of the exponential label delay")
    label_share: float = setting(0.9, unit="share", min=0, max=1, doc="share of requests labelled; the rest "
                                                                      "never are")
    speed: float = setting(1.0, unit="story s per s", min=0.001, doc="story seconds per real second")
    entities: int = setting(5000, unit="entities", min=1, doc="distinct entity ids")
    seed: int = setting(11, doc="random seed (an identifier, not a quantity)")
    duration: float = setting(0.0, unit="story s", min=0, doc="how long to run; 0 runs until stopped")
