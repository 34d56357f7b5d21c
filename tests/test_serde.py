"""The Confluent wire format serde: round trips for every schema, typed errors for bad bytes,
and schema evolution through the registry."""
import json
import struct

import pytest
from flywheel.schemas import RECORD_NAMES, AvroSerde, DecodeFailure, load_schema
from flywheel.schemas.errors import BadMagicByte, TruncatedMessage, UnknownSchemaId
from flywheel.schemas.registry import open_registry
from hypothesis import HealthCheck, given, settings

from tests.avro_strategies import records


@pytest.fixture(scope="module")
def module_registry(tmp_path_factory):
    return open_registry(None, tmp_path_factory.mktemp("registry"))


@pytest.mark.parametrize("record_name", RECORD_NAMES)
def test_every_schema_round_trips(module_registry, record_name):
    serde = AvroSerde(module_registry, record_name)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records(record_name))
    def round_trip(record):
        data = serde.encode(record)
        assert data[0] == 0
        assert struct.unpack(">I", data[1:5])[0] == serde.schema_id
        assert serde.decode(data) == record

    round_trip()


def _request(**extra):
    return {"request_id": "r1", "entity_id": "e1", "model": "m", "event_time": 1_700_000_000_000,
            "numeric": {"a": 1.5, "b": None}, "categorical": {"c": "x"}, "dense": None, "metadata": {}, **extra}


def test_unknown_schema_id_is_a_typed_error(registry):
    serde = AvroSerde(registry, "InferenceRequest")
    body = serde.encode(_request())[5:]
    with pytest.raises(UnknownSchemaId) as info:
        serde.decode(b"\x00" + struct.pack(">I", 9999) + body)
    assert info.value.schema_id == 9999 and info.value.reason == "unknown_schema"


def test_truncated_and_foreign_bytes_are_typed_errors(registry):
    serde = AvroSerde(registry, "InferenceRequest")
    data = serde.encode(_request())
    with pytest.raises(TruncatedMessage):
        serde.decode(data[:3])
    with pytest.raises(TruncatedMessage):
        serde.decode(data[:-4])
    with pytest.raises(BadMagicByte):
        serde.decode(b"\x01" + data[1:])
    with pytest.raises(TruncatedMessage):
        serde.decode(None)


def test_decode_many_keeps_going_past_bad_records(registry):
    serde = AvroSerde(registry, "InferenceRequest")
    good = serde.encode(_request())
    out = serde.decode_many([good, b"garbage", good[:8], good])
    assert out[0] == out[3] == serde.decode(good)
    assert isinstance(out[1], DecodeFailure) and out[1].reason == "undecodable"
    assert isinstance(out[2], DecodeFailure) and out[2].reason == "undecodable"


def test_old_writer_schema_decodes_with_current_reader(registry):
    """A producer still on the previous schema (no `metadata`, no `dense`) writes; the current
    reader fills the defaults."""
    current = json.loads(load_schema("InferenceRequest"))
    old = dict(current, fields=[f for f in current["fields"] if f["name"] not in ("metadata", "dense")])
    old_writer = AvroSerde(registry, "InferenceRequest", schema_text=json.dumps(old))
    reader = AvroSerde(registry, "InferenceRequest")
    assert old_writer.schema_id != reader.schema_id
    record = {k: v for k, v in _request().items() if k not in ("metadata", "dense")}
    decoded = reader.decode(old_writer.encode(record))
    assert decoded == {**record, "metadata": {}, "dense": None}


def test_encoding_a_record_that_does_not_fit_is_a_typed_error(registry):
    from flywheel.schemas.errors import SerdeError
    serde = AvroSerde(registry, "InferenceRequest")
    with pytest.raises(SerdeError):
        serde.encode({"request_id": "r1"})
