"""The backends the store contract tests run on: the embedded one always (with a clock the test
moves), Cassandra when FLYWHEEL_CASSANDRA_HOSTS names a cluster (real time, own keyspace)."""
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import pytest
from flywheel.feature_store import FeatureStore, StoreSettings, open_store
from flywheel.feature_store.settings import CassandraSettings

CASSANDRA_HOSTS = os.environ.get("FLYWHEEL_CASSANDRA_HOSTS", "")
NO_CASSANDRA = "FLYWHEEL_CASSANDRA_HOSTS is not set: no Cassandra cluster to test against"
T0 = 1_700_000_000_000   # a fixed epoch-ms origin for test records


@dataclass
class FakeClock:
    now: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    def __call__(self) -> int:
        return self.now


@dataclass
class Backend:
    settings: StoreSettings
    data_dir: Path
    advance: Callable[[float], None]      # let `seconds` pass for TTLs
    clock: Callable[[], int] | None = None

    def open(self, **changes) -> FeatureStore:
        kwargs = {"clock": self.clock} if self.clock else {}
        return open_store(replace(self.settings, **changes), self.data_dir, **kwargs)


def make_backend(name: str, tmp_path: Path) -> Backend:
    if name == "sqlite":
        clock = FakeClock()
        return Backend(StoreSettings(), tmp_path, lambda s: setattr(clock, "now", clock.now + int(s * 1000)), clock)
    if not CASSANDRA_HOSTS:
        pytest.skip(NO_CASSANDRA)
    settings = StoreSettings(backend="cassandra", cassandra=CassandraSettings(
        hosts=CASSANDRA_HOSTS.split(","), keyspace=f"flywheel_test_{uuid.uuid4().hex[:12]}",
        consistency=os.environ.get("FLYWHEEL_STORE_CASSANDRA_CONSISTENCY", "LOCAL_QUORUM")))
    return Backend(settings, tmp_path, time.sleep)


def drop(backend: Backend, store: FeatureStore) -> None:
    """Remove a Cassandra test keyspace (the embedded store lives in tmp_path)."""
    if backend.settings.backend == "cassandra":
        store.session.execute(f"DROP KEYSPACE IF EXISTS {backend.settings.cassandra.keyspace}")


def write_from_process(settings: StoreSettings, data_dir: Path, writer: str, count: int, go) -> None:
    """A second process's writes: its own feedback records plus online rows every writer shares."""
    from flywheel.feature_store import FeedbackRecord, OnlineFeatures, retrying
    store = open_store(settings, data_dir)
    go.wait(30)
    for i in range(0, count, 25):
        batch = [FeedbackRecord(f"{writer}-{j}", f"e{j}", "m", "v1", event_time=T0 + j * 1000,
                                predicted_at=T0, labelled_at=T0 + 1, true_label=writer)
                 for j in range(i, min(count, i + 25))]
        retrying(partial(store.put_feedback, batch), attempts=20)
        shared = [OnlineFeatures(f"shared-{j}", {"x": float(j)}, T0) for j in range(i, i + 25)]
        retrying(partial(store.put_online, "g", shared), attempts=20)
    store.close()
