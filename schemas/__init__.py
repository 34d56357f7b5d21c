"""Avro schemas of every Flywheel record, the Confluent wire-format serde, and schema registries.

Depends on nothing else of Flywheel's.
"""
from flywheel.schemas.catalog import RECORD_NAMES, load_schema, subject_for
from flywheel.schemas.errors import (
    BadMagicByte,
    IncompatibleSchema,
    SchemaRegistryError,
    SerdeError,
    TruncatedMessage,
    UnknownSchemaId,
)
from flywheel.schemas.serde import AvroSerde, DecodeFailure

__all__ = [
    "RECORD_NAMES", "load_schema", "subject_for", "AvroSerde", "DecodeFailure",
    "SerdeError", "BadMagicByte", "TruncatedMessage", "UnknownSchemaId",
    "IncompatibleSchema", "SchemaRegistryError",
]
