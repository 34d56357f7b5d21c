"""Shared fixtures: one real embedded broker per test session, a unique topic prefix and data
dir per test (so tests never see each other's records), and Kafka settings pointing at both."""
import os
import uuid
from pathlib import Path

import pytest
from flywheel.schemas.registry import open_registry
from flywheel.streams.broker import EmbeddedBroker, free_port
from flywheel.streams.clients import make_admin
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog, ensure_topics

from flywheel.config import Config
from tests.ports import free_port_block


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """The real Tansu broker, or the cluster FLYWHEEL_BOOTSTRAP names."""
    if os.environ.get("FLYWHEEL_BOOTSTRAP"):
        yield os.environ["FLYWHEEL_BOOTSTRAP"]
        return
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(free_port(), log) as b:
        yield b.bootstrap


@pytest.fixture(autouse=True)
def registry_port(monkeypatch) -> int:
    """For any processor or `flywheel up` a test starts: a free port for the REST registry (the
    default, 18081, may be a developer's running stack), consumer groups of the test's own (on
    the session broker, a group an earlier test's member still holds makes a join wait for it) and
    the short session timeout of the `kafka` fixture (a join on Tansu waits about half of it),
    and a free port for the web console a stack serves (its default, 8470, likewise)."""
    port = free_port_block(1)          # below the ephemeral range: `flywheel up` binds them seconds later
    monkeypatch.setenv("FLYWHEEL_CONSOLE_PORT", str(port + 1))
    monkeypatch.setenv("FLYWHEEL_KAFKA_EMBEDDED_REGISTRY_PORT", str(port))
    monkeypatch.setenv("FLYWHEEL_KAFKA_SESSION_TIMEOUT_MS", "6000")
    test = uuid.uuid4().hex[:8]
    for processor in ("worker", "joiner", "monitor", "retrainer"):
        monkeypatch.setenv(f"FLYWHEEL_{processor.upper()}_GROUP_ID", f"g{test}.{processor}")
    return port


@pytest.fixture
def kafka(broker) -> KafkaSettings:
    """Settings with a fresh topic prefix. session.timeout.ms=6000: a group join on Tansu waits
    about half the session timeout."""
    return KafkaSettings(bootstrap=broker, topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
                         partitions=4, session_timeout_ms=6000)


@pytest.fixture
def catalog(kafka) -> TopicCatalog:
    return TopicCatalog(kafka)


@pytest.fixture
def make_topics(kafka, catalog):
    """Create the core topics plus those of the given models."""
    def make(*models: str) -> TopicCatalog:
        ensure_topics(make_admin(kafka), catalog.core() + [s for m in models for s in catalog.for_model(m)])
        return catalog
    return make


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def registered(data_dir):
    """Model m's version v1 (32 numeric features f00..f31, labels 0 and 1) in the data dir's
    artifact store, as `models register` leaves it: no broker, no reference profile."""
    from flywheel.processors.models.store import ArtifactStore
    from flywheel.processors.training import synthetic, train
    data = synthetic(200, seed=1)
    trained = train("m", "v1", data.numeric, data.target, data.spec, kind="mlp")
    ArtifactStore(data_dir).save(trained.onnx_bytes, trained.manifest)
    return data_dir


@pytest.fixture
def registry(data_dir):
    return open_registry(None, data_dir)


@pytest.fixture
def config(kafka, data_dir) -> Config:
    return Config(data_dir=data_dir, metrics_port=free_port(), kafka=kafka,
                  env={"FLYWHEEL_DATA_DIR": str(data_dir)})
