"""Publish ground truth, keyed by request id, to the `labels` topic."""
import time

from flywheel.schemas import AvroSerde
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.clients import make_producer
from flywheel.streams.delivery import TrackedProducer
from flywheel.streams.errors import BadRequest
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog


class LabelPublisher:
    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry, source: str = "sdk"):
        self.topic = TopicCatalog(settings).labels
        self._source = source
        self._serde = AvroSerde(registry, "GroundTruth")
        self._out = TrackedProducer(make_producer(settings))

    def label(self, request_id: str, label: str | None = None, value: float | None = None,
              model: str | None = None, labelled_at: int | None = None, reviewer: str | None = None,
              note: str | None = None) -> None:
        """Record the true class (classifiers) or value (regressors) of one request; a person's
        label may say who gave it and why."""
        if (label is None) == (value is None):
            raise BadRequest(f"request {request_id}: give exactly one of label or value")
        record = {"request_id": request_id, "model": model,
                  "label": None if label is None else str(label),
                  "value": None if value is None else float(value),
                  "labelled_at": labelled_at or int(time.time() * 1000), "source": self._source,
                  "reviewer": reviewer, "note": note}
        self._out.produce(self.topic, self._serde.encode(record), key=request_id.encode())

    def flush(self, timeout: float = 30.0) -> int:
        return self._out.flush(timeout)
