"""The backtest's side-by-side report: candidate versus what production served on the same
requests, scored with the monitor's own performance code so the numbers mean the same thing."""
from dataclasses import asdict, dataclass, field

import numpy as np
from flywheel.processors.monitor.performance import performance

PRIMARY = {"classifier": "accuracy", "regressor": "mae"}
LOWER_IS_BETTER = {"mae", "rmse", "log_loss", "calibration_error"}


@dataclass
class SliceRow:
    name: str                     # "feature=value" or "label=value"
    count: int
    baseline: float | None
    candidate: float | None

    @property
    def difference(self) -> float | None:
        if self.baseline is None or self.candidate is None:
            return None
        return self.candidate - self.baseline


@dataclass
class Latency:
    what: str                     # what was timed
    p50_ms: float
    p99_ms: float
    per_request_us: float | None = None


@dataclass
class BacktestReport:
    model: str
    candidate: str
    baseline: str
    start: int
    end: int
    kind: str                     # classifier | regressor
    primary_metric: str
    requests: int                 # scored by both sides
    baseline_metrics: dict[str, float]
    candidate_metrics: dict[str, float]
    agreement: float              # share of requests where both answered the same
    slices: list[SliceRow] = field(default_factory=list)
    latency: dict[str, Latency] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> requests left out

    @property
    def better(self) -> str:
        """Which side wins on the primary metric: candidate, baseline or tie."""
        b, c = self.baseline_metrics.get(self.primary_metric), self.candidate_metrics.get(self.primary_metric)
        if b is None or c is None or b == c:
            return "tie"
        lower = self.primary_metric in LOWER_IS_BETTER
        return "candidate" if (c < b) == lower else "baseline"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["better"] = self.better
        out["slices"] = [{**asdict(s), "difference": s.difference} for s in self.slices]
        return out


def score(baseline: list[dict], candidate: list[dict]) -> tuple[str, dict[str, float], dict[str, float]]:
    """(kind, baseline metrics, candidate metrics) of two aligned lists of feedback-shaped dicts."""
    b, c = performance(baseline), performance(candidate)
    if b is None or c is None:
        return "classifier", {}, {}
    return b.kind, b.metrics, c.metrics


def primary(records: list[dict], metric: str) -> float | None:
    result = performance(records)
    return None if result is None else result.metrics.get(metric)


def slices(baseline: list[dict], candidate: list[dict], features: list[str], metric: str,
           by_label: bool) -> list[SliceRow]:
    """The primary metric per value of each slicing feature (and per true label)."""
    keys: list[tuple[str, callable]] = [(f, lambda r, f=f: r["categorical"].get(f)) for f in features]
    if by_label:
        keys.append(("label", lambda r: r["true_label"]))
    rows = []
    for name, value_of in keys:
        groups: dict[str, list[int]] = {}
        for i, record in enumerate(baseline):
            groups.setdefault(str(value_of(record)), []).append(i)
        for value, idx in sorted(groups.items()):
            rows.append(SliceRow(f"{name}={value}", len(idx), primary([baseline[i] for i in idx], metric),
                                 primary([candidate[i] for i in idx], metric)))
    return rows


def agreement(baseline: list[dict], candidate: list[dict], tolerance: float = 1e-6) -> float:
    if not baseline:
        return 0.0
    same = sum(1 for b, c in zip(baseline, candidate)
               if (b["predicted_label"] == c["predicted_label"]) and
               (b["predicted_value"] is None or c["predicted_value"] is None or
                abs(b["predicted_value"] - c["predicted_value"]) <= tolerance))
    return same / len(baseline)


def latency(what: str, seconds: list[float], sizes: list[int] | None = None) -> Latency | None:
    if not seconds:
        return None
    ms = np.asarray(seconds) * 1000
    per = None if sizes is None else float(np.sum(seconds) / max(1, sum(sizes)) * 1e6)
    return Latency(what, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), per)
