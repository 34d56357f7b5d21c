"""A stack the SDK's examples run against: the test's broker and registry, the demo's churn
model registered in the test's data dir, a worker serving it, and the FLYWHEEL_* environment
that `flywheel.connect()` reads pointing at all of it."""
from collections.abc import Iterator
from contextlib import contextmanager

from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.models import ModelRegistry
from flywheel.processors.simulator.bootstrap import ensure_model
from flywheel.processors.simulator.concept import Concept
from flywheel.streams.clients import make_admin
from flywheel.streams.topics import TopicCatalog, ensure_topics

from tests.test_worker_support import RunningWorker

CUSTOMER = {"x0": 0.3, "x1": -1.2, "x2": 0.8, "x3": 0.0, "x4": 1.1, "x5": -0.4, "x6": 0.2, "x7": 0.5,
            "plan": "pro"}


@contextmanager
def churn_served(kafka, registry, data_dir, monkeypatch) -> Iterator[dict[str, str]]:
    """Yields the environment a client process needs to reach the stack."""
    catalog = TopicCatalog(kafka)
    ensure_topics(make_admin(kafka), catalog.core() + catalog.for_model("churn"))
    models = ModelRegistry(kafka, registry, data_dir, actor="test")
    ensure_model(models, open_store(StoreSettings(), data_dir), "churn", Concept(), rows=3000)
    models.close()
    env = {"FLYWHEEL_DATA_DIR": str(data_dir), "FLYWHEEL_BOOTSTRAP": kafka.bootstrap,
           "FLYWHEEL_TOPIC_PREFIX": kafka.topic_prefix}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(data_dir)  # no flywheel.toml of the clone's own
    with RunningWorker(kafka, registry, data_dir):
        yield env
