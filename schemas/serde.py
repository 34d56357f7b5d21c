"""Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary.

The writer's schema travels by id, so a record written with an older compatible version is
decoded with the current reader schema (Avro schema resolution). `decode_many` takes a whole
consumed batch and returns a failure value in place of each bad record, so one poison message
never stops a batch.
"""
import json
import struct
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import fastavro
from flywheel.schemas.catalog import load_schema, subject_for
from flywheel.schemas.errors import BadMagicByte, SerdeError, TruncatedMessage, UnknownSchemaId
from flywheel.schemas.registry.base import SchemaRegistry

MAGIC = 0
HEADER = struct.Struct(">bI")


@dataclass(frozen=True)
class DecodeFailure:
    """Stands in a decoded batch for a message that could not be decoded."""

    reason: str
    detail: str


class AvroSerde:
    """Encode and decode one record type. Registers its schema on construction."""

    def __init__(self, registry: SchemaRegistry, record_name: str, schema_text: str | None = None):
        text = schema_text or load_schema(record_name)
        self.record_name = record_name
        self._registry = registry
        self._reader = fastavro.parse_schema(json.loads(text))
        self.schema_id = registry.register(subject_for(record_name), text)
        self._header = HEADER.pack(MAGIC, self.schema_id)
        self._writers: dict[int, Any] = {self.schema_id: None}

    def encode(self, record: dict) -> bytes:
        out = BytesIO()
        out.write(self._header)
        try:
            fastavro.schemaless_writer(out, self._reader, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            raise SerdeError(f"cannot encode {self.record_name}: {e}") from e
        return out.getvalue()

    def encode_many(self, records: list[dict]) -> list[bytes]:
        return [self.encode(r) for r in records]

    def decode(self, data: bytes | None) -> dict:
        if data is None or len(data) < HEADER.size:
            raise TruncatedMessage(f"{len(data or b'')} bytes is shorter than the 5-byte header")
        magic, schema_id = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise BadMagicByte(f"magic byte {magic} is not the Confluent wire format's 0")
        writer = self._writer(schema_id)
        buf = BytesIO(data)
        buf.seek(HEADER.size)
        try:
            if writer is None:
                record = fastavro.schemaless_reader(buf, self._reader, None)
            else:
                record = fastavro.schemaless_reader(buf, writer, self._reader)
        except (EOFError, StopIteration, IndexError) as e:
            raise TruncatedMessage(f"{self.record_name} body ends early: {e!r}") from e
        except Exception as e:  # fastavro raises bare exceptions for corrupt bodies
            raise SerdeError(f"cannot decode {self.record_name}: {e!r}") from e
        if buf.tell() != len(data):
            raise SerdeError(f"{len(data) - buf.tell()} trailing bytes after {self.record_name}")
        return record

    def decode_many(self, messages: list[bytes | None]) -> list[dict | DecodeFailure]:
        out: list[dict | DecodeFailure] = []
        for data in messages:
            try:
                out.append(self.decode(data))
            except SerdeError as e:
                out.append(DecodeFailure(e.reason, str(e)))
        return out

    def field_kinds(self) -> list[tuple[str, str]]:
        """(name, type kind) of each field, in order: what a hand-written fast path checks it was
        written for before it trusts itself."""
        out = []
        for f in self._reader["fields"]:
            t = f["type"]
            kind = t if isinstance(t, str) else ("union" if isinstance(t, list) else t["type"])
            out.append((f["name"].split(".")[-1], kind))
        return out

    def _writer(self, schema_id: int):
        if schema_id not in self._writers:
            text = self._registry.schema_by_id(schema_id)  # raises UnknownSchemaId
            self._writers[schema_id] = fastavro.parse_schema(json.loads(text))
        return self._writers[schema_id]


__all__ = ["AvroSerde", "DecodeFailure", "UnknownSchemaId", "MAGIC"]
