"""Build the shared parts every command needs from a Config, in one place."""
from schemas import RECORD_NAMES, load_schema, subject_for
from schemas.registry import SchemaRegistry, open_registry
from streams.clients import make_admin
from streams.topics import TopicCatalog, ensure_topics

from flywheel.config import Config


def schema_registry(config: Config) -> SchemaRegistry:
    return open_registry(config.kafka.schema_registry_url or None, config.data_dir)


def register_all_schemas(registry: SchemaRegistry) -> dict[str, int]:
    return {name: registry.register(subject_for(name), load_schema(name)) for name in RECORD_NAMES}


def ensure_core_topics(config: Config, models: list[str] = ()) -> list[str]:
    catalog = TopicCatalog(config.kafka)
    specs = catalog.core() + [s for m in models for s in catalog.for_model(m)]
    return ensure_topics(make_admin(config.kafka), specs)
