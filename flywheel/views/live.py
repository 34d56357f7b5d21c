"""One frame of `flywheel status`: the running stack's Prometheus figures (rates between this
scrape and the previous one) beside what the store and the event log say about each model over
the look-back. Gathering only; views/terminal.py draws it."""
import time
from dataclasses import dataclass
from pathlib import Path

from flywheel.feature_store import FeatureStore
from flywheel.stack import StackState
from flywheel.views import history
from flywheel.views.gather import ModelView, model_view
from flywheel.views.scrape import LiveFigures, Scrape, figures, scrape
from flywheel.views.stackfile import read_stack


@dataclass
class StatusFrame:
    at: int                              # epoch ms
    stack: StackState
    live: LiveFigures
    models: list[ModelView]              # store-backed, over [since, now)
    since: int


class StatusSession:
    """Keeps the previous scrape so each frame's rates cover the time since the last one."""

    def __init__(self, data_dir: Path, store: FeatureStore, stack: StackState, lookback_ms: int):
        self.data_dir = Path(data_dir)
        self.store = store
        self.stack = stack
        self.lookback_ms = lookback_ms
        self._previous: Scrape = scrape(stack.processes)

    def running(self) -> bool:
        """The stack that wrote stack.json is still the one there."""
        now = read_stack(self.data_dir)
        return now is not None and now.started_at == self.stack.started_at

    def frame(self) -> StatusFrame:
        now = read_stack(self.data_dir)
        if now is not None and now.started_at == self.stack.started_at:
            self.stack = now             # the supervisor rewrites it on every restart: new pids, counts
        current = scrape(self.stack.processes)
        live = figures(self.stack.processes, self._previous, current)
        self._previous = current
        now = int(time.time() * 1000)
        since = now - self.lookback_ms
        names = sorted(set(history.known_models(self.data_dir)) | {v.model for v in live.versions})
        views = [model_view(self.store, self.data_dir, m, since, now + 1, latency_bins=0) for m in names]
        return StatusFrame(now, self.stack, live, views, since)
