"""Publish inference requests for one model."""
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flywheel.schemas import AvroSerde
from flywheel.schemas.features import FeatureSpec
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.clients import make_producer
from flywheel.streams.delivery import TrackedProducer
from flywheel.streams.errors import BadRequest
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog


@dataclass
class Request:
    """One request as a user writes it: a flat dict of named features (numbers or strings)."""

    features: dict[str, Any]
    entity_id: str | None = None
    request_id: str | None = None
    event_time: int | None = None  # epoch milliseconds; now when absent
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "Request":
        if "features" not in data or not isinstance(data["features"], dict):
            raise BadRequest("a request needs a 'features' object of name: value")
        unknown = set(data) - {"features", "entity_id", "request_id", "event_time", "metadata"}
        if unknown:
            raise BadRequest(f"unknown request field(s): {', '.join(sorted(unknown))}")
        return cls(**data)


class Publisher:
    """Validates against the model's feature spec when it has one, then produces to
    `<model>.requests` keyed by entity id (so one entity's requests stay in order)."""

    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry, model: str,
                 feature_spec: FeatureSpec | None = None):
        self.model = model
        self.topic = TopicCatalog(settings).requests(model)
        self._spec = feature_spec or FeatureSpec()
        self._serde = AvroSerde(registry, "InferenceRequest")
        self._out = TrackedProducer(make_producer(settings))

    def publish(self, request: Request | dict[str, Any]) -> str:
        """Queue one request; return its request id. A bad feature raises FeatureProblem."""
        if not isinstance(request, Request):
            request = Request(features=request)
        record = self.to_record(request)
        self.produce(*self.encode(record))
        return record["request_id"]

    def encode(self, record: dict) -> tuple[bytes, bytes]:
        """A checked record's key (its entity id) and wire-format value."""
        return record["entity_id"].encode(), self._serde.encode(record)

    def produce(self, key: bytes, value: bytes) -> None:
        """Queue one encoded request (see `encode`)."""
        self._out.produce(self.topic, value, key=key)

    def publish_many(self, requests: Iterable[Request | dict[str, Any]]) -> list[str]:
        return [self.publish(r) for r in requests]

    def to_record(self, request: Request) -> dict:
        numeric, categorical = self._spec.split(request.features)
        self._spec.check(numeric, categorical)
        request_id = request.request_id or uuid.uuid4().hex
        return {
            "request_id": request_id,
            "entity_id": request.entity_id or request_id,
            "model": self.model,
            "event_time": request.event_time or int(time.time() * 1000),
            "numeric": numeric,
            "categorical": categorical,
            "dense": None,
            "metadata": request.metadata,
        }

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for delivery; raise DeliveryFailed if any request did not reach the broker."""
        return self._out.flush(timeout)

    @property
    def delivered(self) -> int:
        """Requests the broker has acknowledged so far."""
        return self._out.delivered
