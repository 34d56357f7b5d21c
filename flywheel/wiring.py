"""Build the shared parts every command needs from a Config, in one place.

The client SDK (flywheel/client.py) builds its schema registry here too, so what only a
processor needs (the store, metrics, the processors' runtime) is imported inside the function
that needs it: a client installed without the `serve` extra never imports it."""
from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from flywheel.config import Config
from flywheel.schemas import RECORD_NAMES, load_schema, subject_for
from flywheel.schemas.registry import RegistryAccess, SchemaRegistry, open_registry
from flywheel.streams.clients import make_admin
from flywheel.streams.topics import TopicCatalog, ensure_topics, partitions_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from flywheel.feature_store import FeatureStore
    from flywheel.processors.runtime.processor import Endpoint


def schema_registry(config: Config) -> SchemaRegistry:
    k = config.kafka
    return open_registry(k.schema_registry_url or None, config.data_dir,
                         access=RegistryAccess(k.schema_registry_username, k.schema_registry_password,
                                               k.schema_registry_ca_location, k.schema_registry_certificate_location,
                                               k.schema_registry_key_location))


def register_all_schemas(registry: SchemaRegistry) -> dict[str, int]:
    return {name: registry.register(subject_for(name), load_schema(name)) for name in RECORD_NAMES}


def ensure_core_topics(config: Config, models: list[str] = ()) -> list[str]:
    """Create the core topics and the models' topics that are missing, with the configured
    partitions; topics added to a running stack take as many as `labels` has, since the joiner
    joins every model's predictions with it key by key."""
    admin = make_admin(config.kafka)
    count = partitions_of(admin, TopicCatalog(config.kafka).labels) or config.kafka.partitions
    catalog = TopicCatalog(replace(config.kafka, partitions=count))
    specs = catalog.core() + [s for m in models for s in catalog.for_model(m)]
    return ensure_topics(admin, specs)


def feature_store_for(config: Config) -> FeatureStore:
    from flywheel.feature_store import StoreSettings, open_store
    return open_store(config.section(StoreSettings, "store"), config.data_dir)


class RedactingFilter(logging.Filter):
    """Scrubs the config's secrets from every log line, whatever library wrote it."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.config.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def metrics_endpoint(config: Config) -> Endpoint:
    """Where a stream processor (processors/runtime/processor.py) serves its /metrics."""
    from flywheel.processors.runtime.processor import Endpoint
    return Endpoint(config.metrics_port, config.metrics_addr)


def start_processor(config: Config, metrics: CollectorRegistry | None = None) -> threading.Event:
    """What every long-running command does first: log lines to stderr, serve its /metrics (a
    stream processor serves its own: `metrics_endpoint`), and turn SIGTERM/SIGINT into the stop
    event its loop checks, and collect garbage less often."""
    from flywheel.processors.runtime import start_metrics_server, stop_on_signals
    from flywheel.processors.runtime.gc_tuning import tune_gc
    tune_gc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(config))
    if metrics is not None:
        start_metrics_server(config.metrics_port, metrics, config.metrics_addr)
    return stop_on_signals()
