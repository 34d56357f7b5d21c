"""What the store and the artifact store remember about a model, durable after the stack stops:
its versions (manifests), the monitor's windows per version (performance, drift per feature,
data quality), the latency of the requests that got labelled, and the retrain bookkeeping."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flywheel.feature_store import FeatureStore, RetrainRecord, WindowMetrics
from flywheel.processors.models.errors import ManifestError
from flywheel.processors.models.manifest import Manifest
from flywheel.processors.models.store import ArtifactStore

# The monitor's flat window keys (processors/monitor/windows.py WindowResult.metrics).
PERFORMANCE = "performance."
DRIFT = "drift."
# Which live figure tells a version's quality, best first; lower is better for the error ones.
PRIMARY_METRICS = ("accuracy", "rmse", "mae")
LOWER_IS_BETTER = {"rmse", "mae", "log_loss", "calibration_error"}


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created_at: int | None = None           # registration time, from the manifest
    task: str = ""
    training_metrics: dict[str, float] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Point:
    at: int                                  # epoch ms: a window's end, or a latency bin's start
    value: float


@dataclass
class LatencyBin:
    start: int
    end: int
    count: int
    p50: float                               # seconds
    p90: float
    p99: float


@dataclass
class ModelHistory:
    model: str
    start: int
    end: int
    versions: list[VersionInfo]
    windows: dict[str, list[WindowMetrics]]  # by version, in window order
    retrains: list[RetrainRecord]

    @property
    def primary_metric(self) -> str | None:
        present = {k[len(PERFORMANCE):] for rows in self.windows.values() for w in rows for k in w.values
                   if k.startswith(PERFORMANCE)}
        return next((m for m in PRIMARY_METRICS if m in present), None)

    def performance(self, metric: str) -> dict[str, list[Point]]:
        """Per version, the metric at each window's end (windows without labels are left out)."""
        key = PERFORMANCE + metric
        return {v: [Point(w.window_end, w.values[key]) for w in rows if key in w.values]
                for v, rows in self.windows.items() if any(key in w.values for w in rows)}

    def labelled(self) -> dict[str, int]:
        return {v: int(sum(w.values.get("labelled", 0) for w in rows)) for v, rows in self.windows.items()}

    def drift(self, statistic: str = "psi") -> dict[str, dict[str, list[Point]]]:
        """Per feature, per version, the statistic at each window's end."""
        out: dict[str, dict[str, list[Point]]] = {}
        for version, rows in self.windows.items():
            for w in rows:
                for key, value in w.values.items():
                    if key.startswith(DRIFT) and key.endswith("." + statistic):
                        feature = key[len(DRIFT):-len(statistic) - 1]
                        out.setdefault(feature, {}).setdefault(version, []).append(Point(w.window_end, value))
        return out

    def last_drift(self, version: str) -> dict[str, dict[str, float]]:
        """Per feature, every drift statistic of the version's last window that has any."""
        for w in reversed(self.windows.get(version, [])):
            out: dict[str, dict[str, float]] = {}
            for key, value in w.values.items():
                if key.startswith(DRIFT):
                    feature, _, statistic = key[len(DRIFT):].rpartition(".")
                    out.setdefault(feature, {})[statistic] = value
            if out:
                return out
        return {}

    def most_drifted(self, statistic: str = "psi", limit: int = 6) -> list[str]:
        peaks = {f: max(p.value for points in by_version.values() for p in points)
                 for f, by_version in self.drift(statistic).items()}
        return sorted(peaks, key=lambda f: -peaks[f])[:limit]


def known_models(data_dir: Path) -> list[str]:
    """Models with registered versions in the data dir's artifact store."""
    return ArtifactStore(data_dir).models()


def versions(store: FeatureStore, data_dir: Path, model: str) -> list[VersionInfo]:
    """Every version the artifact store, the feedback or the retrain bookkeeping names, oldest
    registration first (versions without a manifest last, by name)."""
    found = {v.version: v for v in _manifests(data_dir, model)}
    named = list(store.feedback_versions(model))
    for r in store.retrains(model):
        named += [v for v in (r.base_version, r.new_version) if v]
    for name in named:
        found.setdefault(name, VersionInfo(name))
    return sorted(found.values(), key=lambda v: (v.created_at is None, v.created_at or 0, v.version))


def _manifests(data_dir: Path, model: str) -> list[VersionInfo]:
    artifacts = ArtifactStore(data_dir)
    out = []
    for path in sorted((artifacts.root / model).glob("*/manifest.json")):
        try:
            m = Manifest.read(path)
        except ManifestError:
            continue                          # half-written or foreign: the version still shows by name
        out.append(VersionInfo(m.version, m.created_at, m.output.task, dict(m.training_metrics), m.description))
    return out


def gather(store: FeatureStore, data_dir: Path, model: str, start: int, end: int) -> ModelHistory:
    known = versions(store, data_dir, model)
    windows = {v.version: list(store.metrics(model, v.version, start, end)) for v in known}
    retrains = [r for r in store.retrains(model) if start <= r.requested_at < end]
    return ModelHistory(model, start, end, known, {v: rows for v, rows in windows.items() if rows}, retrains)


def earliest(store: FeatureStore, data_dir: Path, model: str) -> int | None:
    """The earliest time the model is known to have existed (first registration or retrain)."""
    times = [v.created_at for v in _manifests(data_dir, model) if v.created_at]
    times += [r.requested_at for r in store.retrains(model)]
    return min(times) if times else None


def latency(store: FeatureStore, model: str, start: int, end: int, bins: int = 40) -> list[LatencyBin]:
    """Request-to-prediction latency (predicted_at - event_time) of the labelled requests, the
    only latency the store keeps, in `bins` equal time bins of [start, end)."""
    times, delays = [], []
    for r in store.feedback(model, start, end):
        times.append(r.event_time)
        delays.append((r.predicted_at - r.event_time) / 1000.0)
    if not times:
        return []
    times_a, delays_a = np.asarray(times), np.asarray(delays)
    edges = np.linspace(times_a.min(), times_a.max() + 1, bins + 1).astype(np.int64)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = delays_a[(times_a >= lo) & (times_a < hi)]
        if inside.size:
            p50, p90, p99 = np.percentile(inside, [50, 90, 99])
            out.append(LatencyBin(int(lo), int(hi), int(inside.size), float(p50), float(p90), float(p99)))
    return out
