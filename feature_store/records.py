"""Typed records the store reads and writes. Field names follow the Avro contracts in
schemas/avro so a decoded message becomes a record with `Record.from_dict(decoded)`, and
`record.to_dict()` is ready to encode. Times are epoch milliseconds."""
import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flywheel.feature_store.errors import InvalidRecord

RETRAIN_STATUSES = ("in_flight", "done", "failed")


@functools.cache
def _field_names(cls) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


class _Record:
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **extra):
        """Build from a mapping (e.g. a decoded Avro message), ignoring fields this record lacks."""
        merged = {**data, **extra} if extra else data
        names = _field_names(cls)
        if merged.keys() <= names:       # a store row or a columnar decode: nothing to leave out
            return cls(**merged)
        return cls(**{k: v for k, v in merged.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """The fields by name. Shallow (not dataclasses.asdict, which deep-copies every map and
        list and was most of the joiner's time): the values are shared, not to be mutated."""
        return dict(vars(self))   # a dataclass's instance dict holds exactly its fields, in order


@dataclass
class OnlineFeatures(_Record):
    """One entity's features in a feature group. Values: numbers (numeric features), strings
    (categorical features) or None."""
    entity_id: str
    features: dict[str, float | str | None]
    updated_at: int


@dataclass
class PredictionRecord(_Record):
    """A prediction waiting for its ground truth. Key: (request_id, model, model_version), so the
    live, canary and shadow answers to one request are kept side by side."""
    request_id: str
    entity_id: str
    model: str
    model_version: str
    event_time: int
    predicted_at: int
    role: str = "LIVE"
    label: str | None = None
    value: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    confidence: float | None = None
    flags: list[str] = field(default_factory=list)
    numeric: dict[str, float | None] = field(default_factory=dict)
    categorical: dict[str, str | None] = field(default_factory=dict)
    feature_sources: dict[str, str] = field(default_factory=dict)
    replay: bool = False


@dataclass
class FeedbackRecord(_Record):
    """A prediction joined with its ground truth. Key: (request_id, model, model_version); stored in
    partitions (model, model_version, event_time bucket), ordered by (event_time, request_id)."""
    request_id: str
    entity_id: str
    model: str
    model_version: str
    event_time: int
    predicted_at: int
    labelled_at: int
    numeric: dict[str, float | None] = field(default_factory=dict)
    categorical: dict[str, str | None] = field(default_factory=dict)
    predicted_label: str | None = None
    predicted_value: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    confidence: float | None = None
    true_label: str | None = None
    true_value: float | None = None
    label_count: int = 1
    flags: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.request_id, self.model, self.model_version


@dataclass
class WindowMetrics(_Record):
    """What the monitor measured for one model version over [window_start, window_end).
    Key: (model, model_version, window_start)."""
    model: str
    model_version: str
    window_start: int
    window_end: int
    values: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)   # stored as JSON


@dataclass
class WindowPartial(_Record):
    """One monitor process's share of a window: what it read of the window's records from the
    partitions it owns. Key: (group_id, window_start, model, model_version, instance).
    `profile` is Profile bytes (None: the version had no reference profile), `performance`
    PerformanceCounts as a dict."""
    group_id: str
    model: str
    model_version: str
    window_start: int
    window_end: int
    instance: str
    row_count: int = 0
    late: int = 0
    profile: bytes | None = None
    performance: dict[str, Any] = field(default_factory=dict)   # stored as JSON
    written_at: int = 0


@dataclass
class MonitorProgress(_Record):
    """How far one monitor process has written partials, per partition it owns ("topic:partition"
    -> epoch ms: every window ending at or before it is written). Key: (group_id, instance)."""
    group_id: str
    instance: str
    through: dict[str, int] = field(default_factory=dict)
    written_at: int = 0


@dataclass
class CountedOffsets(_Record):
    """Offsets of one partition ("topic:partition") at or past the group's commit that written
    partials already counted: int64 [start, end) pairs (processors/monitor/counted.py). Key:
    (group_id, topic_partition)."""
    group_id: str
    topic_partition: str
    runs: bytes = b""
    written_at: int = 0


@dataclass
class ReferenceProfile(_Record):
    """The training-time profile of a model version (serialized sketches). Key: (model, model_version)."""
    model: str
    model_version: str
    created_at: int
    profile: bytes


@dataclass
class RetrainRecord(_Record):
    """Bookkeeping of one retrain request. Key: (model, retrain_id); status in RETRAIN_STATUSES."""
    model: str
    retrain_id: str
    status: str
    requested_at: int
    updated_at: int
    base_version: str | None = None
    new_version: str | None = None
    reasons: list[str] = field(default_factory=list)
    detail: str = ""

    def __post_init__(self):
        if self.status not in RETRAIN_STATUSES:
            raise InvalidRecord(f"retrain status {self.status!r} is not one of {', '.join(RETRAIN_STATUSES)}")
