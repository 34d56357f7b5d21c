"""Schema evolution rules are enforced before registering, with the field and rule named."""
import json

import pytest
from flywheel.schemas import IncompatibleSchema, load_schema, subject_for

SUBJECT = subject_for("GroundTruth")


def _base() -> dict:
    return json.loads(load_schema("GroundTruth"))


def _with_fields(fields) -> str:
    return json.dumps(dict(_base(), fields=fields))


def test_adding_an_optional_field_is_accepted(registry):
    first = registry.register(SUBJECT, load_schema("GroundTruth"))
    added = _base()["fields"] + [{"name": "comment", "type": ["null", "string"], "default": None}]
    second = registry.register(SUBJECT, _with_fields(added))
    assert second != first
    assert len(registry.versions(SUBJECT)) == 2


def test_adding_a_required_field_is_refused_naming_it(registry):
    registry.register(SUBJECT, load_schema("GroundTruth"))
    added = _base()["fields"] + [{"name": "annotator", "type": "string"}]
    with pytest.raises(IncompatibleSchema) as info:
        registry.register(SUBJECT, _with_fields(added))
    assert "annotator" in str(info.value) and "BACKWARD" in str(info.value)
    assert len(registry.versions(SUBJECT)) == 1


def test_changing_a_type_is_refused_naming_the_field(registry):
    registry.register(SUBJECT, load_schema("GroundTruth"))
    changed = [dict(f, type="int") if f["name"] == "labelled_at" else f for f in _base()["fields"]]
    with pytest.raises(IncompatibleSchema) as info:
        registry.register(SUBJECT, _with_fields(changed))
    assert "labelled_at" in str(info.value) and "type_mismatch" in str(info.value)


def test_removing_a_required_field_is_refused_under_full(registry):
    """Avro's BACKWARD rule allows dropping a field (the new reader ignores it); FULL, set per
    subject, also protects old readers, which need it."""
    registry.set_compatibility(SUBJECT, "FULL")
    registry.register(SUBJECT, load_schema("GroundTruth"))
    removed = [f for f in _base()["fields"] if f["name"] != "request_id"]
    with pytest.raises(IncompatibleSchema) as info:
        registry.register(SUBJECT, _with_fields(removed))
    assert "request_id" in str(info.value) and "FORWARD" in str(info.value)


def test_registering_the_same_schema_twice_returns_the_same_id(registry):
    first = registry.register(SUBJECT, load_schema("GroundTruth"))
    assert registry.register(SUBJECT, load_schema("GroundTruth")) == first


def test_unknown_mode_is_refused(registry):
    with pytest.raises(ValueError, match="unknown compatibility mode"):
        registry.set_compatibility(SUBJECT, "SIDEWAYS")


def test_model_events_before_approvals_are_still_read(registry):
    """ModelEvent gained approval kinds and an optional awaiting_approval: a registry holding the
    schema from before accepts the new one, and an event written then reads with no approval."""
    import io

    import fastavro
    new = json.loads(load_schema("ModelEvent"))
    before = dict(new, fields=[f for f in new["fields"] if f["name"] != "awaiting_approval"])
    kind = next(f for f in before["fields"] if f["name"] == "kind")
    kind["type"]["symbols"] = [s for s in kind["type"]["symbols"]
                               if s not in ("AWAITING_APPROVAL", "APPROVED", "DECLINED")]
    subject = subject_for("ModelEvent")
    registry.register(subject, json.dumps(before))
    registry.register(subject, load_schema("ModelEvent"))
    assert len(registry.versions(subject)) == 2
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(before), {"model": "m", "kind": "CANARY", "version": "2",
                                                                    "at": 1})
    buf.seek(0)
    old_event = fastavro.schemaless_reader(buf, fastavro.parse_schema(before), fastavro.parse_schema(new))
    assert old_event["awaiting_approval"] is None and old_event["kind"] == "CANARY"
