"""The data model, read from the CQL files under cql/ (the one source of truth): each table's
columns with their CQL types, partition key and clustering columns. The Cassandra backend runs
the files as they are; the embedded backend derives its tables from these definitions, so both
hold the same tables with the same keys."""
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson
from flywheel.feature_store.errors import StoreError

# Text columns that hold JSON (maps that may contain nulls, free-form detail).
JSON_COLUMNS = frozenset({"features", "numeric", "categorical", "detail", "performance"})
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def to_json(value: Any) -> str:
    """JSON text of a map, list or detail column. orjson rather than json: a joiner writes several
    such columns a record and json's encoder was a fifth of its time. JSON has no NaN: a
    non-finite number is stored as null, that is as missing, which is what every reader
    (retrainer, backtest) makes of it."""
    return orjson.dumps(value, option=_JSON_OPTIONS).decode()


def from_json(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:   # NaN or Infinity, as rows written with json.dumps may hold
        return json.loads(text)

_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\)(?: WITH .*)?$", re.S)
_PRIMARY = re.compile(r"PRIMARY KEY \((.*)\)$", re.S)


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, str]          # name -> CQL type, in declaration order
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...]

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.partition_key + self.clustering


@dataclass(frozen=True)
class Migration:
    name: str
    text: str

    @property
    def statements(self) -> list[str]:
        return split_statements(self.text)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@cache
def migrations() -> tuple[Migration, ...]:
    files = sorted((f for f in resources.files("flywheel.feature_store").joinpath("cql").iterdir()
                    if f.name.endswith(".cql")), key=lambda f: f.name)
    return tuple(Migration(f.name, f.read_text()) for f in files)


@cache
def tables() -> dict[str, Table]:
    out = {}
    for migration in migrations():
        for statement in migration.statements:
            if statement.startswith("CREATE TABLE"):
                table = parse_table(statement)
                out[table.name] = table
            elif statement.startswith("DROP TABLE"):
                out.pop(statement.split()[-1], None)
    return out


def split_statements(text: str) -> list[str]:
    """Statements of a CQL file without comments. Our files keep ';' and '--' out of literals."""
    lines = [line.split("--", 1)[0] for line in text.splitlines()]
    return [" ".join(s.split()) for s in "\n".join(lines).split(";") if s.strip()]


def parse_table(statement: str) -> Table:
    match = _CREATE.match(statement)
    if not match:
        raise ValueError(f"not a CREATE TABLE IF NOT EXISTS statement: {statement[:80]}")
    name, body = match.groups()
    parts = _split_top(body)
    primary = _PRIMARY.match(parts[-1])
    if not primary:
        raise ValueError(f"table {name}: the last clause must be PRIMARY KEY (...)")
    columns = dict(part.split(" ", 1) for part in parts[:-1])
    key = _split_top(primary.group(1))
    partition = tuple(_split_top(key[0][1:-1])) if key[0].startswith("(") else (key[0],)
    table = Table(name, columns, partition, tuple(key[1:]))
    missing = set(table.primary_key) - set(columns)
    if missing:
        raise ValueError(f"table {name}: key column(s) {sorted(missing)} are not declared")
    return table


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and angle brackets."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def pending(applied: dict[str, str]) -> list[Migration]:
    """The migrations not yet in the ledger (name -> checksum). An applied file that has changed
    since is an error: schema changes go in a new file."""
    changed = [m.name for m in migrations() if m.name in applied and applied[m.name] != m.checksum]
    if changed:
        raise StoreError(f"migration file(s) {', '.join(changed)} changed after they were applied; "
                         "put schema changes in a new file under feature_store/cql/")
    return [m for m in migrations() if m.name not in applied]
