"""The feature and feedback store: one interface (`FeatureStore`), typed records, and backends
found by name (feature_store/<backend>.py defines `open_backend`). Knows no Kafka.

    store = open_store(config.section(StoreSettings, "store"), config.data_dir)
"""
import importlib
from pathlib import Path

from flywheel.feature_store.base import Clock, FeatureStore, wall_clock_ms
from flywheel.feature_store.errors import (
    InvalidRecord,
    StoreConfigError,
    StoreError,
    StoreNotMigrated,
    StoreTimeout,
    StoreUnavailable,
)
from flywheel.feature_store.records import (
    CountedOffsets,
    FeedbackRecord,
    MonitorProgress,
    OnlineFeatures,
    PredictionRecord,
    ReferenceProfile,
    RetrainRecord,
    WindowMetrics,
    WindowPartial,
)
from flywheel.feature_store.retry import retrying
from flywheel.feature_store.settings import StoreSettings


def open_store(settings: StoreSettings, data_dir: str | Path | None = None,
               clock: Clock = wall_clock_ms) -> FeatureStore:
    """Open the configured backend. The embedded one creates its tables on open; Cassandra expects
    `flywheel store migrate` to have run (StoreNotMigrated otherwise)."""
    return _backend(settings.backend).open_backend(settings, Path(data_dir or "."), clock)


def _backend(name: str):
    module = None
    if name.isidentifier():
        try:
            module = importlib.import_module(f"flywheel.feature_store.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"flywheel.feature_store.{name}":
                raise
    if not hasattr(module, "open_backend"):
        raise StoreConfigError(f"unknown store backend {name!r} (shipped: sqlite, cassandra)")
    return module


__all__ = ["open_store", "FeatureStore", "StoreSettings", "retrying", "wall_clock_ms", "Clock",
           "StoreError", "StoreUnavailable", "StoreTimeout", "StoreNotMigrated", "StoreConfigError",
           "InvalidRecord", "OnlineFeatures", "PredictionRecord", "FeedbackRecord",
           "WindowMetrics", "WindowPartial", "MonitorProgress", "CountedOffsets", "ReferenceProfile", "RetrainRecord"]
