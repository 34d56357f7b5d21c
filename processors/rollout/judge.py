"""The canary decision, as a pure function of per-request losses.

Classifiers contribute a 0/1 error per labelled request, regressors a squared error, so one
rule serves both: compare the mean loss of canary and incumbent with Welch's t-test once each has
`min_labels` labelled requests. A clear difference decides at once (the better one wins); if
neither is clearly better by `max_labels`, the incumbent stays: a candidate must earn its place.
"""
from dataclasses import dataclass
from enum import Enum

import numpy as np
from flywheel.processors.rollout.settings import RolloutSettings
from scipy import stats


class Verdict(Enum):
    WAIT = "wait"
    PROMOTE = "promote"
    ROLL_BACK = "roll_back"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    evidence: dict[str, float]


def decide(canary_losses: np.ndarray, live_losses: np.ndarray, settings: RolloutSettings) -> Decision:
    # The joiner refuses non-finite labels; a NaN or inf loss that still got here is left out
    # (and counted in the evidence) rather than deciding the verdict on its own.
    canary_losses, dropped_c = _finite(canary_losses)
    live_losses, dropped_l = _finite(live_losses)
    n_c, n_l = len(canary_losses), len(live_losses)
    evidence = {"canary_labels": float(n_c), "live_labels": float(n_l)}
    if dropped_c or dropped_l:
        evidence["non_finite_losses"] = float(dropped_c + dropped_l)
    if min(n_c, n_l) < settings.min_labels:
        return Decision(Verdict.WAIT, f"{min(n_c, n_l)} of {settings.min_labels} labels", evidence)
    mean_c, mean_l = float(np.mean(canary_losses)), float(np.mean(live_losses))
    p = _p_value(canary_losses, live_losses)
    evidence.update(canary_loss=mean_c, live_loss=mean_l, p_value=p)
    if p < settings.p_value:
        if mean_c < mean_l:
            return Decision(Verdict.PROMOTE, f"canary loss {mean_c:.4f} < live {mean_l:.4f} (p={p:.2g})", evidence)
        return Decision(Verdict.ROLL_BACK, f"canary loss {mean_c:.4f} > live {mean_l:.4f} (p={p:.2g})", evidence)
    if min(n_c, n_l) >= settings.max_labels:
        return Decision(Verdict.ROLL_BACK, f"no clear gain after {settings.max_labels} labels "
                                           f"(canary {mean_c:.4f}, live {mean_l:.4f}, p={p:.2g})", evidence)
    return Decision(Verdict.WAIT, f"not yet significant (p={p:.2g})", evidence)


def _p_value(a: np.ndarray, b: np.ndarray) -> float:
    if np.var(a) == 0 and np.var(b) == 0:  # identical constants: t-test is undefined
        return 0.0 if np.mean(a) != np.mean(b) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _finite(losses: np.ndarray) -> tuple[np.ndarray, int]:
    losses = np.asarray(losses, dtype=float)
    keep = np.isfinite(losses)
    return losses[keep], int(len(losses) - keep.sum())
