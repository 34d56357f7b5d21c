"""Confluent Schema Registry through confluent_kafka.schema_registry.

The compatibility rule is checked locally with `avro` first, so a refusal names the field
and rule in the same words as the embedded registry; the server checks again on register.
"""
from contextlib import contextmanager

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx  # what the client runs on: httpx2 or httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError as ClientError
from flywheel.schemas import compatibility
from flywheel.schemas.errors import RegistryAccessDenied, RegistryUnavailable, SchemaRegistryError, UnknownSchemaId


class ConfluentRegistry:
    def __init__(self, url: str, default_mode: str = "BACKWARD", access=None):
        # No retries inside the client (it makes 3, a second apart): an unreachable registry is
        # RegistryUnavailable at once, and the processors' hold_back is the one place that waits.
        self._client = SchemaRegistryClient({"url": url, "max.retries": 0,
                                             **(access.client_config() if access else {})})
        self._default_mode = default_mode
        self._by_id: dict[int, str] = {}

    def register(self, subject: str, schema_text: str) -> int:
        try:
            with self._reached():
                return self._client.lookup_schema(subject, Schema(schema_text, "AVRO")).schema_id
        except ClientError as e:
            if e.http_status_code != 404:
                raise SchemaRegistryError(f"schema registry: {e}") from e
        compatibility.check(subject, schema_text, self.versions(subject), self.compatibility(subject))
        try:
            with self._reached():
                return self._client.register_schema(subject, Schema(schema_text, "AVRO"))
        except ClientError as e:
            raise SchemaRegistryError(f"schema registry refused {subject}: {e}") from e

    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self._by_id:
            try:
                with self._reached():
                    self._by_id[schema_id] = self._client.get_schema(schema_id).schema_str
            except ClientError as e:
                if e.http_status_code == 404:
                    raise UnknownSchemaId(schema_id) from e
                raise RegistryUnavailable(f"schema registry: {e}") from e
        return self._by_id[schema_id]

    def versions(self, subject: str) -> list[str]:
        try:
            with self._reached():
                numbers = self._client.get_versions(subject)
                return [self._client.get_version(subject, n).schema.schema_str for n in sorted(numbers)]
        except ClientError as e:
            if e.http_status_code == 404:
                return []
            raise SchemaRegistryError(f"schema registry: {e}") from e

    def set_compatibility(self, subject: str, mode: str) -> None:
        try:
            with self._reached():
                self._client.set_compatibility(subject_name=subject, level=mode)
        except ClientError as e:
            raise SchemaRegistryError(f"schema registry refused {mode} for {subject}: {e}") from e

    def compatibility(self, subject: str) -> str:
        try:
            with self._reached():
                return self._client.get_compatibility(subject_name=subject)
        except ClientError as e:
            if e.http_status_code == 404:
                return self._default_mode
            raise SchemaRegistryError(f"schema registry: {e}") from e

    @contextmanager
    def _reached(self):
        """The registry's answers pass (a ClientError is the caller's to read), except two: a
        registry that cannot be reached (refused, reset, timed out: the HTTP client's transport
        errors) or that answers 5xx is RegistryUnavailable, backpressure in every processor; one
        that refuses the credentials (401, 403) is the user's settings to fix."""
        try:
            yield
        except ClientError as e:
            if e.http_status_code in (401, 403):
                raise RegistryAccessDenied(f"schema registry refused the credentials ({e}); check [kafka] "
                                           "schema_registry_username and schema_registry_password") from e
            if e.http_status_code is not None and e.http_status_code >= 500:
                raise RegistryUnavailable(f"schema registry: {e}") from e
            raise
        except httpx.TransportError as e:
            raise RegistryUnavailable(f"schema registry unreachable: {e}") from e
