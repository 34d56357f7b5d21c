"""Drift statistics between a reference profile and a window profile, computed from sketches.

Numeric features (and the predicted score): two-sample Kolmogorov-Smirnov distance, PSI and D1
over the reference's quantile bins. Categorical features (and the predicted label): two-sample
chi-square, PSI and D1 over the categories. Every statistic comes with the error bound the
sketches imply (KLL's normalised rank error at 99% confidence; 0 while a sketch is exact), so a
figure read off sketches can be compared honestly with one computed from the raw data.

A feature is flagged when the shift is both large (PSI at or above `psi`) and significant, on at
least `min_count` live values. Significance is decided for the model, not per test: the window's
p-values (taken at the conservative end of the sketches' error bound) are adjusted together with
Benjamini-Hochberg, and a feature counts when its adjusted p-value is below the window's share
`alpha` of the model's false-alarm budget. Under no drift at all, BH keeps the chance that any
feature of a window is flagged at or below `alpha` (Benjamini & Hochberg 1995; valid for the
positively dependent tests of one window, Benjamini & Yekutieli 2001), so a model raises on average
at most `false_alarms_per_day` drift flags a day, however many features it has. Large-but-noisy or
significant-but-tiny shifts alone are not alarms.

A window with fewer than `min_count` rows is not judged on its own: `SampleGate` carries it into
the next window of the same version until together they have enough (a canary at a small share, a
version's first minutes), so no decision rests on a handful of records and none is lost.
"""
import math
from dataclasses import dataclass, field

import numpy as np
from datasketches import kll_doubles_sketch
from flywheel.processors.monitor.profile import CategoricalSummary, NumericSummary, Profile, rank_error
from flywheel.processors.monitor.settings import MonitorSettings
from scipy.stats import chi2_contingency, false_discovery_control
from scipy.stats.distributions import kstwobign

PSI_FLOOR = 1e-4          # share given to an empty bin so PSI stays finite
KS_GRID = 1001            # ranks at which each sketch's quantiles become KS evaluation points
DEFAULT_BINS = 10
DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2                     # the usual "significant shift" line for PSI
    false_alarms_per_day: float = 0.1    # expected drift flags per model per day when nothing drifted
    window_seconds: float = 3600.0       # the monitor's window: how many tests a day the budget covers
    min_count: int = 100                 # live values a feature needs before it can be flagged
    bins: int = DEFAULT_BINS

    @classmethod
    def of(cls, settings: MonitorSettings) -> "DriftThresholds":
        return cls(psi=settings.psi_threshold, false_alarms_per_day=settings.false_alarms_per_day,
                   window_seconds=settings.window_seconds, min_count=settings.min_count, bins=settings.bins)

    @property
    def alpha(self) -> float:
        """Chance of a false flag allowed per window: the day's budget spread over its windows."""
        return min(1.0, self.false_alarms_per_day * self.window_seconds / DAY_SECONDS)


@dataclass
class FeatureDrift:
    feature: str
    kind: str                                   # numeric | categorical
    count: int                                  # live values compared
    statistics: dict[str, float] = field(default_factory=dict)   # ks, ks_p, chi2, chi2_p, psi, d1
    bounds: dict[str, float] = field(default_factory=dict)       # error bound of each statistic
    flagged: bool = False


def ks_distance(reference: kll_doubles_sketch, live: kll_doubles_sketch) -> tuple[float, float]:
    """The KS distance sup|F_ref - F_live| from two KLL sketches, and its error bound."""
    ranks = np.linspace(0.0, 1.0, KS_GRID)
    points = np.unique(np.concatenate([reference.get_quantiles(ranks), live.get_quantiles(ranks)]))
    gap = np.abs(np.asarray(reference.get_cdf(points))[:-1] - np.asarray(live.get_cdf(points))[:-1])
    bound = rank_error(reference) + rank_error(live) + 1.0 / (KS_GRID - 1)
    return float(gap.max()), bound


def ks_p_value(distance: float, n: int, m: int) -> float:
    """Asymptotic two-sample KS p-value (what scipy's ks_2samp uses for large samples)."""
    if n == 0 or m == 0:
        return 1.0
    return float(kstwobign.sf(distance * math.sqrt(n * m / (n + m))))


def reference_edges(reference: kll_doubles_sketch, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Inner bin edges at the reference's quantiles: equal-share bins under the reference."""
    return np.unique(reference.get_quantiles(np.arange(1, bins) / bins))


def shares_between(sketch: kll_doubles_sketch, edges: np.ndarray) -> np.ndarray:
    """Share of values in (-inf, e1], (e1, e2], ..., (e_last, inf)."""
    cdf = np.asarray(sketch.get_cdf(edges))      # F(e1) .. F(e_last), then 1
    return np.diff(np.concatenate([[0.0], cdf]))


def psi(actual: np.ndarray, expected: np.ndarray) -> float:
    a, e = _floor(actual), _floor(expected)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_bound(actual: np.ndarray, expected: np.ndarray, da: float, de: float) -> float:
    """How far PSI can move when each share may be off by `da` (actual) and `de` (expected).

    Each bin's term (a-e)ln(a/e) is convex, so its largest value over the box of possible shares
    is at a corner; its smallest is 0 if the box meets a = e, else at a corner too (the term is
    monotone in a and e on either side of the diagonal)."""
    if da == 0 and de == 0:
        return 0.0
    a, e = np.asarray(actual, float), np.asarray(expected, float)
    base = _terms(a, e)
    corners = np.stack([_terms(a + sa * da, e + se * de) for sa in (-1, 1) for se in (-1, 1)])
    overlap = (a - da <= e + de) & (e - de <= a + da)
    low = np.where(overlap, 0.0, corners.min(axis=0))
    return float(np.sum(np.maximum(corners.max(axis=0) - base, base - low)))


def d1(actual: np.ndarray, expected: np.ndarray) -> float:
    """Total-variation distance between two normalised histograms: half their L1 distance, in [0, 1]."""
    return float(0.5 * np.abs(np.asarray(actual) - np.asarray(expected)).sum())


def numeric_drift(name: str, reference: NumericSummary, live: NumericSummary,
                  thresholds: DriftThresholds) -> FeatureDrift | None:
    if reference.count == 0 or live.count == 0:
        return None
    n, m = reference.count, live.count
    distance, ks_bound = ks_distance(reference.sketch, live.sketch)
    edges = reference_edges(reference.sketch, thresholds.bins)
    expected, actual = shares_between(reference.sketch, edges), shares_between(live.sketch, edges)
    de, da = 2 * reference.rank_error(), 2 * live.rank_error()   # a share is a difference of two ranks
    drift = FeatureDrift(name, "numeric", m, {
        "ks": distance, "ks_p": ks_p_value(distance, n, m),
        "psi": psi(actual, expected), "d1": d1(actual, expected),
    }, {"ks": ks_bound, "psi": psi_bound(actual, expected, da, de),
        "d1": 0.5 * len(actual) * (da + de)})
    drift.statistics["p"] = ks_p_value(max(0.0, distance - ks_bound), n, m)   # the conservative end
    return drift


def categorical_drift(name: str, reference: CategoricalSummary, live: CategoricalSummary,
                      thresholds: DriftThresholds) -> FeatureDrift | None:
    if reference.count == 0 or live.count == 0:
        return None
    ref_counts, live_counts = reference.counts(), live.counts()
    categories = sorted(set(ref_counts) | set(live_counts))
    expected = np.array([ref_counts.get(c, 0.0) for c in categories]) / reference.count
    actual = np.array([live_counts.get(c, 0.0) for c in categories]) / live.count
    statistic, p_value = chi_square(np.array([ref_counts.get(c, 0.0) for c in categories]),
                                    np.array([live_counts.get(c, 0.0) for c in categories]))
    de, da = reference.count_error() / reference.count, live.count_error() / live.count
    drift = FeatureDrift(name, "categorical", live.count, {
        "chi2": statistic, "chi2_p": p_value, "p": p_value, "psi": psi(actual, expected),
        "d1": d1(actual, expected),
    }, {"psi": psi_bound(actual, expected, da, de), "d1": 0.5 * len(categories) * (da + de)})
    return drift


def chi_square(reference_counts: np.ndarray, live_counts: np.ndarray) -> tuple[float, float]:
    """Two-sample chi-square test of homogeneity over categories (neither side is 'truth')."""
    table = np.vstack([reference_counts, live_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def compare(reference: Profile, window: Profile, thresholds: DriftThresholds) -> list[FeatureDrift]:
    """Drift of every feature the window and the reference both have, flagged as one family."""
    out: list[FeatureDrift] = []
    for name, live in sorted(window.numeric.items()):
        if name in reference.numeric:
            out.append(numeric_drift(name, reference.numeric[name], live, thresholds))
    for name, live in sorted(window.categorical.items()):
        if name in reference.categorical:
            out.append(categorical_drift(name, reference.categorical[name], live, thresholds))
    out = [d for d in out if d is not None]
    flag_family(out, thresholds)
    return out


def flag_family(drifts: list[FeatureDrift], thresholds: DriftThresholds) -> None:
    """Adjust the p-values of the features with enough values together (BH) and flag the large and
    significant ones; the adjusted p-value is kept as the statistic `p_adjusted`."""
    tested = [d for d in drifts if d.count >= thresholds.min_count]
    if not tested:
        return
    adjusted = false_discovery_control([d.statistics["p"] for d in tested], method="bh")
    for d, p in zip(tested, np.atleast_1d(adjusted)):
        d.statistics["p_adjusted"] = float(p)
        d.flagged = bool(d.statistics["psi"] >= thresholds.psi and p < thresholds.alpha)


@dataclass
class SampleGate:
    """Windows of one model version too small to judge, merged until they are big enough.

    `admit` takes a closed window's profile and returns the profile to judge: the window itself
    when it has `min_rows`, else nothing until the carried windows together have them (then the
    merged profile, spanning them all)."""
    min_rows: int
    carried: dict[tuple[str, str], Profile] = field(default_factory=dict)

    def admit(self, key: tuple[str, str], window: Profile) -> Profile | None:
        pending = self.carried.pop(key, None)
        if pending is not None:
            pending.merge(window)
            window = pending
        if window.rows >= self.min_rows:
            return window
        self.carried[key] = window
        return None


def _floor(shares: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(shares, float), PSI_FLOOR, None)


def _terms(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    a, e = _floor(a), _floor(e)
    return (a - e) * np.log(a / e)
