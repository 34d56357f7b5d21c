"""Data-quality rules of one window against its reference profile.

Rules, each a figure per feature (volume: per model):
- missing_rate: share of records without the feature; violated when it exceeds the reference's
  own missing rate by more than `missing_rate`.
- out_of_range: share of present values outside the feature's declared [min, max].
- unseen_category: share of present values in categories the reference never saw.
- volume: records in the window over what the reference rate predicts for the window's length;
  violated outside [volume_low, volume_high]. Skipped when the reference has no rate.
"""
from dataclasses import dataclass

from flywheel.processors.monitor.profile import Profile
from flywheel.processors.monitor.settings import MonitorSettings

VOLUME = "_volume"  # the feature name under which the per-model volume rule is reported


@dataclass(frozen=True)
class QualityThresholds:
    missing_rate: float = 0.05       # allowed rise over the reference's missing rate
    out_of_range: float = 0.01
    unseen_category: float = 0.01
    volume_low: float = 0.2
    volume_high: float = 5.0
    min_count: int = 20              # fewer records than this: report figures, flag nothing

    @classmethod
    def of(cls, settings: MonitorSettings) -> "QualityThresholds":
        return cls(missing_rate=settings.missing_rate, out_of_range=settings.out_of_range,
                   unseen_category=settings.unseen_category, volume_low=settings.volume_low,
                   volume_high=settings.volume_high)


@dataclass(frozen=True)
class QualityCheck:
    feature: str
    rule: str            # missing_rate | out_of_range | unseen_category | volume
    value: float
    limit: float
    violated: bool


def check(reference: Profile, window: Profile, thresholds: QualityThresholds) -> list[QualityCheck]:
    enough = window.rows >= thresholds.min_count
    out: list[QualityCheck] = []
    for name, live in sorted(window.numeric.items()):
        ref = reference.numeric.get(name)
        out.append(_missing(name, live.missing, window.rows, ref.missing if ref else 0, reference.rows,
                            thresholds, enough))
        if reference.spec.get(name) is not None and live.count:
            share = live.out_of_range / live.count
            out.append(QualityCheck(name, "out_of_range", share, thresholds.out_of_range,
                                    enough and share > thresholds.out_of_range))
    for name, live in sorted(window.categorical.items()):
        ref = reference.categorical.get(name)
        out.append(_missing(name, live.missing, window.rows, ref.missing if ref else 0, reference.rows,
                            thresholds, enough))
        if name in reference.known and live.count:
            share = live.unseen / live.count
            out.append(QualityCheck(name, "unseen_category", share, thresholds.unseen_category,
                                    enough and share > thresholds.unseen_category))
    if reference.rate > 0 and window.seconds > 0:
        ratio = window.rows / (reference.rate * window.seconds)
        out.append(QualityCheck(VOLUME, "volume", ratio, thresholds.volume_low,
                                not thresholds.volume_low <= ratio <= thresholds.volume_high))
    return out


def _missing(name: str, missing: int, rows: int, ref_missing: int, ref_rows: int,
             thresholds: QualityThresholds, enough: bool) -> QualityCheck:
    rate = missing / rows if rows else 0.0
    limit = (ref_missing / ref_rows if ref_rows else 0.0) + thresholds.missing_rate
    return QualityCheck(name, "missing_rate", rate, limit, enough and rate > limit)
