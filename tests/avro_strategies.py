"""Hypothesis strategies that generate valid records for any Avro schema (as parsed JSON)."""
import json

from flywheel.schemas import load_schema
from hypothesis import strategies as st

PRIMITIVES = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False, width=32),
    "double": st.floats(allow_nan=False),
    "string": st.text(max_size=20),
    "bytes": st.binary(max_size=40),
}


def for_type(t, named: dict):
    if isinstance(t, str):
        return PRIMITIVES[t] if t in PRIMITIVES else named[t.split(".")[-1]]
    if isinstance(t, list):
        return st.one_of(*(for_type(branch, named) for branch in t))
    kind = t["type"]
    if kind == "record":
        strategy = st.fixed_dictionaries({f["name"]: for_type(f["type"], named) for f in t["fields"]})
    elif kind == "enum":
        strategy = st.sampled_from(t["symbols"])
    elif kind == "map":
        return st.dictionaries(st.text(max_size=10), for_type(t["values"], named), max_size=5)
    elif kind == "array":
        return st.lists(for_type(t["items"], named), max_size=5)
    else:
        return for_type(kind, named)
    named[t["name"]] = strategy
    return strategy


def records(record_name: str):
    return for_type(json.loads(load_schema(record_name)), {})
