"""The canary decision: the better version wins once the evidence is clear."""
import numpy as np
from flywheel.processors.rollout.judge import Verdict, decide
from flywheel.processors.rollout.settings import RolloutSettings

SETTINGS = RolloutSettings(min_labels=200, max_labels=1000, p_value=0.01)


def errors(rate: float, n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < rate).astype(float)


def test_waits_for_enough_labels():
    d = decide(errors(0.0, 50, 1), errors(0.5, 5000, 2), SETTINGS)
    assert d.verdict is Verdict.WAIT and "50 of 200" in d.reason


def test_a_clearly_better_canary_is_promoted():
    d = decide(errors(0.10, 300, 1), errors(0.30, 300, 2), SETTINGS)
    assert d.verdict is Verdict.PROMOTE
    assert d.evidence["canary_loss"] < d.evidence["live_loss"] and d.evidence["p_value"] < 0.01


def test_a_clearly_worse_canary_is_rolled_back():
    d = decide(errors(0.40, 300, 1), errors(0.15, 300, 2), SETTINGS)
    assert d.verdict is Verdict.ROLL_BACK


def test_no_clear_gain_waits_then_keeps_the_incumbent():
    assert decide(errors(0.20, 300, 1), errors(0.20, 300, 2), SETTINGS).verdict is Verdict.WAIT
    d = decide(errors(0.20, 1000, 3), errors(0.20, 1000, 4), SETTINGS)
    assert d.verdict is Verdict.ROLL_BACK and "no clear gain" in d.reason


def test_regression_losses_work_the_same_way():
    rng = np.random.default_rng(5)
    good, bad = rng.normal(0, 1, 400) ** 2, rng.normal(0, 2, 400) ** 2
    assert decide(good, bad, SETTINGS).verdict is Verdict.PROMOTE
    assert decide(bad, good, SETTINGS).verdict is Verdict.ROLL_BACK


def test_false_promotions_are_rare_when_versions_are_equal():
    """Equal versions: a promotion would be a false alarm; at p=0.01 expect about 0.5% of runs."""
    promotions = sum(decide(errors(0.2, 400, s), errors(0.2, 400, s + 1000), SETTINGS).verdict is Verdict.PROMOTE
                     for s in range(200))
    assert promotions <= 5


def test_one_nan_loss_among_thousands_does_not_decide_the_verdict():
    """Issue 12, item 4: one NaN among 2,001 canary losses turned a promotion into a rollback."""
    better = errors(0.05, 2000, 5)
    d = decide(np.append(better, np.nan), errors(0.3, 2000, 6), SETTINGS)
    assert d.verdict is Verdict.PROMOTE
    assert d.evidence["non_finite_losses"] == 1 and d.evidence["canary_labels"] == 2000
