"""Loading a feature group into the online store from rows (a JSON-lines or CSV file, or the
JSON values of a topic, read by the caller). A row is a flat object: the entity id column, an
optional time column (epoch ms; else the load time), and every other field a feature: numbers
are numeric features, strings categorical, null/empty missing."""
import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

from flywheel.feature_store.base import Clock, FeatureStore, wall_clock_ms
from flywheel.feature_store.errors import InvalidRecord
from flywheel.feature_store.records import OnlineFeatures
from flywheel.feature_store.retry import retrying


def jsonl_rows(lines: Iterable[str]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(line number, row) for each non-blank line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidRecord(f"line {number}: not JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise InvalidRecord(f"line {number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def csv_rows(file: TextIO) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(line number, row) with numbers parsed and empty cells as missing."""
    reader = csv.DictReader(file)
    for row in reader:
        yield reader.line_num, {k: _cell(v) for k, v in row.items()}


class FeatureLoader:
    """Turns rows into OnlineFeatures and writes them in batches, retrying while the store is
    unavailable so no row is lost."""

    def __init__(self, store: FeatureStore, group: str, entity_column: str = "entity_id",
                 time_column: str | None = None, ttl_s: int | None = None, batch: int = 500,
                 clock: Clock = wall_clock_ms):
        self.store, self.group, self.ttl_s, self.batch = store, group, ttl_s, batch
        self.entity_column, self.time_column, self.clock = entity_column, time_column, clock
        self.written = 0
        self._pending: list[OnlineFeatures] = []

    def add(self, row: Mapping[str, Any], where: str = "", entity_id: str | None = None) -> None:
        """Queue one row (`entity_id` stands in when the row has no entity column)."""
        self._pending.append(self.to_features(row, where, entity_id))
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> int:
        if self._pending:
            rows, self._pending = self._pending, []
            retrying(lambda: self.store.put_online(self.group, rows, ttl_s=self.ttl_s))
            self.written += len(rows)
        return self.written

    def to_features(self, row: Mapping[str, Any], where: str = "", entity_id: str | None = None) -> OnlineFeatures:
        entity = row.get(self.entity_column, entity_id)
        if entity is None or entity == "":
            raise InvalidRecord(f"{where}no {self.entity_column!r} field")
        updated_at = self.clock()
        if self.time_column:
            try:
                updated_at = int(row[self.time_column])
            except (KeyError, TypeError, ValueError) as e:
                raise InvalidRecord(f"{where}{self.time_column!r} is not epoch milliseconds") from e
        skip = {self.entity_column, self.time_column}
        features = {name: _feature(name, value, where) for name, value in row.items() if name not in skip}
        return OnlineFeatures(str(entity), features, updated_at)


def _feature(name: str, value: Any, where: str) -> float | str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise InvalidRecord(f"{where}feature {name!r} is {value!r}: use a finite number, a string or null")


def _cell(text: str | None) -> float | str | None:
    if text is None or text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text
