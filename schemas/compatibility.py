"""Schema evolution rules, checked with the `avro` library before anything is registered.

BACKWARD: the new schema can read data written with the previous one.
FORWARD: data written with the new schema can be read with the previous one.
FULL: both. The *_TRANSITIVE variants check against every earlier version, not just the last.
"""
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from flywheel.schemas.errors import IncompatibleSchema

MODES = ("NONE", "BACKWARD", "FORWARD", "FULL",
         "BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE")


def check(subject: str, new_schema: str, earlier: list[str], mode: str = "BACKWARD") -> None:
    """Raise IncompatibleSchema naming each offending field and rule; `earlier` is oldest first."""
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}; one of {', '.join(MODES)}")
    if mode == "NONE" or not earlier:
        return
    against = earlier if mode.endswith("_TRANSITIVE") else earlier[-1:]
    new = avro.schema.parse(new_schema)
    problems: list[str] = []
    for old_text in against:
        old = avro.schema.parse(old_text)
        if mode.startswith(("BACKWARD", "FULL")):
            problems += _problems(reader=new, writer=old, rule="BACKWARD")
        if mode.startswith(("FORWARD", "FULL")):
            problems += _problems(reader=old, writer=new, rule="FORWARD")
    if problems:
        raise IncompatibleSchema(subject, mode, sorted(set(problems)))


def _problems(reader, writer, rule: str) -> list[str]:
    """One line per failed check. avro reports locations and messages as unordered sets, so
    the line names every offending field and every rule broken rather than pairing them."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    fields = sorted({_field_at(reader, loc) or loc for loc in result.locations})
    kinds = sorted({kind.value for kind in result.incompatibilities})
    return [f"{rule} rule broken at {', '.join(fields)}: {', '.join(kinds)} ({'; '.join(sorted(result.messages))})"]


def _field_at(schema, location: str) -> str | None:
    """Turn a location like /fields/3/type into the field's name."""
    parts = [p for p in location.split("/") if p]
    node, name = schema, None
    for i, part in enumerate(parts):
        if part == "fields" and i + 1 < len(parts) and parts[i + 1].isdigit() and hasattr(node, "fields"):
            field = node.fields[int(parts[i + 1])]
            name = field.name if name is None else f"{name}.{field.name}"
            node = field.type
    return f"field '{name}'" if name else None
