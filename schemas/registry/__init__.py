"""Schema registries behind one interface: Confluent Schema Registry when a URL is configured,
the embedded SQLite registry otherwise."""
from pathlib import Path

from schemas.registry.base import SchemaRegistry


def open_registry(url: str | None, data_dir: Path, default_mode: str = "BACKWARD") -> SchemaRegistry:
    if url:
        from schemas.registry.confluent import ConfluentRegistry
        return ConfluentRegistry(url, default_mode=default_mode)
    from schemas.registry.embedded import EmbeddedRegistry
    return EmbeddedRegistry(Path(data_dir) / "schemas.sqlite", default_mode=default_mode)


__all__ = ["SchemaRegistry", "open_registry"]
