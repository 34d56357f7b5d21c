"""The feedback store as a replay source: the requests (and optionally the ground truth) of a
model over an event-time range, re-published to Kafka as replays. Useful when the topics no
longer hold that history (retention, or the embedded broker's memory-only storage).

The run reads the rows labelled before it started (`as_of`), ordered by (event time, request
id); a request answered by several versions is sent once. Its cursor is the last (event time,
request id) sent, so rows labelled later cannot shift what a resumed run sends.
"""
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from flywheel.feature_store.base import FeatureStore
from flywheel.feature_store.records import FeedbackRecord
from flywheel.schemas import AvroSerde
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.replay import headers
from flywheel.streams.replay.checkpoint import Checkpoints
from flywheel.streams.replay.cursor import CursorReplay, Item
from flywheel.streams.replay.engine import Decision, Output, ProgressCallback, ReplayOptions
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog

REPLAY_FLAG = "replay"
SENT = "sent"
LABEL_SOURCE = "replay"


@dataclass
class FeedbackHistory:
    store: FeatureStore
    model: str
    start: int
    end: int
    version: str | None = None
    as_of: int = field(default_factory=lambda: int(time.time() * 1000))
    include_replayed: bool = False

    @property
    def name(self) -> str:
        return f"store:{self.model}"

    def spec(self) -> dict:
        return {"model": self.model, "start": self.start, "end": self.end, "version": self.version,
                "as_of": self.as_of, "include_replayed": self.include_replayed}

    def count(self) -> int:
        return sum(1 for _ in self.items(None))

    def items(self, after: str | None) -> Iterator[Item]:
        last = tuple(json.loads(after)) if after else None
        for row in self.store.feedback(self.model, self.start, self.end, self.version):
            key = (row.event_time, row.request_id)
            if (last is not None and key <= last) or row.labelled_at > self.as_of or \
                    (REPLAY_FLAG in row.flags and not self.include_replayed):
                continue
            last = key  # later versions' rows of this request are the same request
            yield Item(json.dumps(list(key)), f"store/{self.model}/{row.request_id}", row)


@dataclass
class FeedbackToTopics:
    """Each stored row back as an InferenceRequest to `<model>.requests` (key entity id) and, with
    `labels`, its ground truth to `labels` (key request id). The records are stamped now, not
    with their event time: history older than a topic's retention would be deleted at once; the
    event time travels in the request itself."""
    run_id: str
    catalog: TopicCatalog
    registry: SchemaRegistry
    labels: bool = False
    requests_topic: str | None = None     # default: the model's request topic
    kind: str = "store"
    marker: str = headers.REPLAY

    def __post_init__(self):
        self._requests = AvroSerde(self.registry, "InferenceRequest")
        self._truth = AvroSerde(self.registry, "GroundTruth")

    def decide(self, item: Item) -> Decision:
        row: FeedbackRecord = item.record
        mark = headers.mark(None, self.marker, self.run_id, item.origin)
        outputs = [Output(self.requests_topic or self.catalog.requests(row.model),
                          self._requests.encode(request_of(row)), row.entity_id.encode(), mark)]
        if self.labels:
            outputs.append(Output(self.catalog.labels, self._truth.encode(_truth(row)), row.request_id.encode(), mark))
        return Decision(SENT, tuple(outputs))


def request_of(row: FeedbackRecord) -> dict:
    """The request as production received it, rebuilt from the features its prediction saw."""
    return {"request_id": row.request_id, "entity_id": row.entity_id, "model": row.model,
            "event_time": row.event_time, "numeric": row.numeric, "categorical": row.categorical,
            "dense": None, "metadata": {}}


def _truth(row: FeedbackRecord) -> dict:
    return {"request_id": row.request_id, "model": row.model, "label": row.true_label, "value": row.true_value,
            "labelled_at": row.labelled_at, "source": LABEL_SOURCE}


def store_replay(settings: KafkaSettings, registry: SchemaRegistry, checkpoints: Checkpoints, store: FeatureStore,
                 run_id: str, model: str, start: int, end: int, version: str | None = None, labels: bool = False,
                 requests_topic: str | None = None, options: ReplayOptions | None = None,
                 include_replayed: bool = False, on_progress: ProgressCallback | None = None) -> CursorReplay:
    existing = checkpoints.load(run_id)
    # A resumed run reads the rows its first attempt saw, whatever was labelled since.
    as_of = existing.spec["as_of"] if existing is not None and "as_of" in existing.spec else int(time.time() * 1000)
    source = FeedbackHistory(store, model, start, end, version, as_of, include_replayed)
    transform = FeedbackToTopics(run_id, TopicCatalog(settings), registry, labels, requests_topic)
    spec = {"labels": labels, "requests_topic": requests_topic}
    return CursorReplay(settings, checkpoints, run_id, source, transform, spec, options, on_progress)
