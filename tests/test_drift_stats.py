"""Drift statistics read off sketches agree with the same statistics computed from the raw data,
within the error bound the sketches state."""
import numpy as np
import pytest
from flywheel.processors.monitor.drift import (
    DriftThresholds,
    categorical_drift,
    flag_family,
    numeric_drift,
    reference_edges,
)
from flywheel.processors.monitor.profile import Profile, build_reference
from flywheel.schemas.features import Feature, FeatureSpec
from scipy.stats import chi2_contingency, ks_2samp

SPEC = FeatureSpec((Feature("x"), Feature("colour", "categorical", categories=("red", "green", "blue"))))


def _direct_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of the raw values in (-inf, e1], (e1, e2], ..., (e_last, inf)."""
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1) / len(values)


def _direct_psi(actual: np.ndarray, expected: np.ndarray) -> float:
    a, e = np.maximum(actual, 1e-4), np.maximum(expected, 1e-4)
    return float(sum((ai - ei) * np.log(ai / ei) for ai, ei in zip(a, e)))


def _profiles(ref_x, live_x, ref_c=(), live_c=()):
    categorical = {"colour": list(ref_c)} if len(ref_c) else {}
    reference = Profile.from_bytes(build_reference(SPEC, {"x": ref_x}, categorical).to_bytes())
    window = reference.empty_like()
    window.add_columns(len(live_x), {"x": live_x}, {"colour": list(live_c)} if len(live_c) else {})
    return reference, window


@pytest.mark.parametrize("live", [
    lambda rng: rng.normal(0.0, 1.0, 30_000),        # same distribution
    lambda rng: rng.normal(0.1, 1.0, 30_000),        # small shift
    lambda rng: rng.normal(0.8, 1.3, 30_000),        # large shift and spread
    lambda rng: rng.exponential(1.0, 30_000),        # another shape altogether
    lambda rng: rng.normal(0.3, 1.0, 400),           # a small window (sketch still exact)
], ids=["same", "small-shift", "large-shift", "other-shape", "small-window"])
def test_numeric_statistics_match_raw_data_within_the_sketch_bound(live):
    rng = np.random.default_rng(7)
    ref_x, live_x = rng.normal(0.0, 1.0, 200_000), live(rng)
    reference, window = _profiles(ref_x, live_x)
    drift = numeric_drift("x", reference.numeric["x"], window.numeric["x"], DriftThresholds())

    exact_ks = ks_2samp(ref_x, live_x).statistic
    assert abs(drift.statistics["ks"] - exact_ks) <= drift.bounds["ks"]
    assert drift.bounds["ks"] < 0.02     # KLL k=1000 reference, k=200 window: tight enough to use

    edges = reference_edges(reference.numeric["x"].sketch)
    expected, actual = _direct_shares(ref_x, edges), _direct_shares(live_x, edges)
    assert abs(drift.statistics["psi"] - _direct_psi(actual, expected)) <= drift.bounds["psi"]
    assert abs(drift.statistics["d1"] - 0.5 * np.abs(actual - expected).sum()) <= drift.bounds["d1"]


def test_exact_sketches_reproduce_scipy_exactly():
    """Below the sketch's capacity nothing is approximated: the bound is the KS grid alone."""
    rng = np.random.default_rng(3)
    ref_x, live_x = rng.normal(0, 1, 150), rng.normal(0.5, 1, 120)
    reference, window = _profiles(ref_x, live_x)
    drift = numeric_drift("x", reference.numeric["x"], window.numeric["x"], DriftThresholds(min_count=1))
    assert drift.bounds["ks"] == pytest.approx(1 / 1000)
    assert drift.statistics["ks"] == pytest.approx(ks_2samp(ref_x, live_x).statistic, abs=1e-3)
    assert drift.bounds["psi"] == 0.0


def test_categorical_statistics_match_raw_counts():
    rng = np.random.default_rng(11)
    ref_c = rng.choice(["red", "green", "blue"], 50_000, p=[0.5, 0.3, 0.2])
    live_c = rng.choice(["red", "green", "blue", "violet"], 5_000, p=[0.3, 0.3, 0.3, 0.1])
    reference, window = _profiles(rng.normal(size=50_000), rng.normal(size=5_000), ref_c, live_c)
    drift = categorical_drift("colour", reference.categorical["colour"], window.categorical["colour"],
                              DriftThresholds())
    categories = ["blue", "green", "red", "violet"]
    ref_counts = np.array([(ref_c == c).sum() for c in categories])
    live_counts = np.array([(live_c == c).sum() for c in categories])
    exact = chi2_contingency(np.vstack([ref_counts, live_counts]), correction=False)
    assert drift.statistics["chi2"] == pytest.approx(exact.statistic)
    assert drift.statistics["chi2_p"] == pytest.approx(exact.pvalue, abs=1e-12)
    expected, actual = ref_counts / ref_counts.sum(), live_counts / live_counts.sum()
    assert drift.statistics["psi"] == pytest.approx(_direct_psi(actual, expected))
    flag_family([drift], DriftThresholds())
    assert drift.flagged       # 10% of a category never seen plus a big mix change
    assert window.categorical["colour"].unseen == (live_c == "violet").sum()


def test_profiles_round_trip_through_bytes_and_merge():
    rng = np.random.default_rng(5)
    reference = build_reference(SPEC, {"x": rng.normal(size=1000)}, {"colour": ["red"] * 1000},
                                scores=rng.random(1000), start_ms=0, end_ms=100_000)
    again = Profile.from_bytes(reference.to_bytes())
    assert again.rows == 1000 and again.rate == pytest.approx(10.0)
    assert again.numeric["x"].sketch.get_quantile(0.5) == reference.numeric["x"].sketch.get_quantile(0.5)
    assert again.known == reference.known
    a, b = again.empty_like(0, 1000), again.empty_like(1000, 2000)
    a.add_columns(3, {"x": [1.0, None, 2.0]}, {"colour": ["red", None, "pink"]})
    b.add_columns(2, {"x": [3.0, 4.0]}, {"colour": ["pink", "red"]})
    a.merge(b)
    assert (a.rows, a.numeric["x"].count, a.numeric["x"].missing) == (5, 4, 1)
    assert (a.categorical["colour"].unseen, a.start_ms, a.end_ms) == (2, 0, 2000)
