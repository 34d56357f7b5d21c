"""The overview page's data: the same sources as `flywheel status` and `flywheel report` (the
store, the registry's event log, the running stack's Prometheus endpoints), gathered by their own
functions in flywheel/views; this module only decides what one refresh shows and keeps the report's
rendered model section until its data changes (its plots are the expensive part)."""
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from flywheel.feature_store import FeatureStore
from flywheel.stack import StackState
from flywheel.views import history, html
from flywheel.views.gather import ModelView, model_view
from flywheel.views.scrape import LiveFigures, Scrape, figures, scrape
from flywheel.views.stackfile import read_stack

SERVING = ("live", "canary", "shadow")


@dataclass(frozen=True)
class DriftRow:
    version: str
    feature: str
    psi: float | None
    ks: float | None
    flagged: bool


@dataclass(frozen=True)
class QualityFlag:
    version: str
    feature: str
    rule: str
    value: float
    limit: float


@dataclass
class ModelOverview:
    view: ModelView
    section: str                                     # the report's HTML for this model (escaped there)
    drift: list[DriftRow] = field(default_factory=list)
    quality: list[QualityFlag] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.view.history.model


@dataclass
class Overview:
    at: int
    since: int
    stack: StackState | None
    live: LiveFigures | None                         # None: no stack runs on this data dir
    models: list[ModelOverview]


class OverviewSource:
    """One per console: keeps the previous scrape (rates span two refreshes) and the sections."""

    def __init__(self, store: FeatureStore, data_dir: Path, lookback_ms: int, psi_threshold: float | None):
        self.store = store
        self.data_dir = Path(data_dir)
        self.lookback_ms = lookback_ms
        self.psi_threshold = psi_threshold
        self._lock = threading.Lock()                # one refresh at a time: the store handle is shared
        self._previous: tuple[float, Scrape] | None = None     # (stack started_at, scrape)
        self._sections: dict[str, tuple[tuple, str]] = {}

    def gather(self) -> Overview:
        with self._lock:
            now = int(time.time() * 1000)
            since = now - self.lookback_ms
            stack = read_stack(self.data_dir)
            live = self._live(stack)
            serving = {v.model for v in live.versions} if live else set()
            names = sorted(set(history.known_models(self.data_dir)) | serving)
            models = [self._model(model_view(self.store, self.data_dir, m, since, now + 1)) for m in names]
            return Overview(now, since, stack, live, models)

    def _live(self, stack: StackState | None) -> LiveFigures | None:
        if stack is None:
            self._previous = None
            return None
        current = scrape(stack.processes)
        before = self._previous[1] if self._previous and self._previous[0] == stack.started_at else current
        self._previous = (stack.started_at, current)
        return figures(stack.processes, before, current)

    def _model(self, view: ModelView) -> ModelOverview:
        h = view.history
        key = (sum(len(w) for w in h.windows.values()), len(view.events), view.events[-1].at if view.events else 0,
               len(view.latency), view.deployment.get("at") if view.deployment else None)
        cached = self._sections.get(h.model)
        if cached is None or cached[0] != key:
            cached = (key, html.model_section(view, self.psi_threshold, heading=False))
            self._sections[h.model] = cached
        return ModelOverview(view, cached[1], drift_rows(view, self.psi_threshold), quality_flags(view))


def serving(view: ModelView) -> list[str]:
    names = [v.version for v in view.history.versions if view.role(v.version) in SERVING]
    return names or list(view.history.windows)


def drift_rows(view: ModelView, psi_threshold: float | None) -> list[DriftRow]:
    """Each serving version's features in its last judged window, the most drifted first."""
    rows = [DriftRow(version, feature, stats.get("psi"), stats.get("ks"),
                     psi_threshold is not None and stats.get("psi", 0.0) >= psi_threshold)
            for version in serving(view) for feature, stats in view.history.last_drift(version).items()]
    return sorted(rows, key=lambda r: -(r.psi or 0.0))


def quality_flags(view: ModelView) -> list[QualityFlag]:
    """The data-quality checks each serving version's last window failed (the monitor's verdicts)."""
    out = []
    for version in serving(view):
        windows = view.history.windows.get(version, [])
        checks = next((w.detail.get("quality") for w in reversed(windows) if w.detail.get("quality")), None) or []
        out += [QualityFlag(version, c["feature"], c["rule"], c["value"], c["limit"]) for c in checks if c["violated"]]
    return out
