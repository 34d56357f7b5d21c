"""The registry interface every backend implements."""
from typing import Protocol


class SchemaRegistry(Protocol):
    def register(self, subject: str, schema_text: str) -> int:
        """Register (or find) a schema under a subject after checking compatibility; return its id.
        Registering the same schema again returns the same id."""

    def schema_by_id(self, schema_id: int) -> str:
        """The schema text for an id; raises UnknownSchemaId."""

    def versions(self, subject: str) -> list[str]:
        """Every schema text registered under a subject, oldest first."""

    def set_compatibility(self, subject: str, mode: str) -> None: ...

    def compatibility(self, subject: str) -> str: ...
