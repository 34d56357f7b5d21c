"""A known relation between features and outcome, which can drift.

Numeric features are Gaussian; a categorical `plan` shifts the score; the label is `churn`
when the noisy linear score is positive. Drifting moves some feature means (covariate drift,
which the monitor sees without labels) and flips some weights (concept drift, which only the
labels reveal): the model trained before the drift then answers worse until it is retrained.
"""
from dataclasses import dataclass, field

import numpy as np
from flywheel.processors.training import Dataset
from flywheel.schemas.features import Feature, FeatureSpec

PLANS = ("free", "pro", "team")
PLAN_EFFECT = {"free": 0.6, "pro": -0.2, "team": -0.6}
LABELS = ("churn", "stay")


@dataclass
class Concept:
    n_numeric: int = 8
    noise: float = 0.35
    seed: int = 7
    drifted: bool = False
    weights: np.ndarray = field(init=False)
    means: np.ndarray = field(init=False)

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        self.weights = rng.normal(0, 1, self.n_numeric)
        self.means = np.zeros(self.n_numeric)

    def drift(self) -> None:
        """Shift the first two feature means by 1.5 sd and flip the sign of the three largest weights."""
        if self.drifted:
            return
        self.drifted = True
        self.means[:2] += 1.5
        biggest = np.argsort(-np.abs(self.weights))[:3]
        self.weights[biggest] *= -1

    @property
    def spec(self) -> FeatureSpec:
        numeric = tuple(Feature(f"x{i}", "numeric", min=-5.0, max=5.0) for i in range(self.n_numeric))
        return FeatureSpec(numeric + (Feature("plan", "categorical", categories=PLANS),))

    def sample(self, n: int, rng: np.random.Generator) -> Dataset:
        numeric = (rng.normal(0, 1, (n, self.n_numeric)) + self.means).astype(np.float32)
        plans = rng.choice(PLANS, size=n, p=(0.5, 0.3, 0.2))
        score = (numeric - self.means) @ self.weights / np.sqrt(self.n_numeric) \
            + np.array([PLAN_EFFECT[p] for p in plans]) + rng.normal(0, self.noise, n)
        if self.drifted:  # the shifted features keep mattering where they now sit
            score = score + 0.4 * (numeric[:, 0] - self.means[0])
        target = np.where(score > 0, LABELS[0], LABELS[1])
        return Dataset(numeric, [list(plans)], target, self.spec)
