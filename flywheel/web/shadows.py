"""What the shadow versions answered to the requests under review. Shadows run on every request
and write to `<model>.shadow`; a review item carries only the serving version's answer, so the
console reads each reviewed model's shadow topic (from its first record, like `review`) and keeps
the latest answers by request id, at most `limit` requests (the oldest are forgotten first)."""
import threading
from collections import OrderedDict
from dataclasses import dataclass

from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.subscriber import Subscriber
from flywheel.streams.topics import TopicCatalog

LIMIT = 100_000


@dataclass(frozen=True)
class OtherAnswer:
    version: str
    label: str | None
    value: float | None
    confidence: float | None


class ShadowAnswers:
    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, limit: int = LIMIT):
        self.kafka = kafka
        self.registry = registry
        self.limit = limit
        self._lock = threading.Lock()
        self._readers: dict[str, Subscriber] = {}
        self._answers: OrderedDict[str, list[OtherAnswer]] = OrderedDict()

    def follow(self, model: str) -> None:
        """Read this model's shadow answers from now on (called from the reading thread only)."""
        if model not in self._readers:
            self._readers[model] = Subscriber(self.kafka, self.registry, TopicCatalog(self.kafka).shadow(model),
                                              "Prediction", start="earliest")

    def poll(self) -> int:
        read = 0
        for reader in self._readers.values():
            batch = [r.value for r in reader.poll_batch(5000, 0.2) if isinstance(r.value, dict)]
            read += len(batch)
            with self._lock:
                for p in batch:
                    self._answers.setdefault(p["request_id"], []).append(
                        OtherAnswer(p["model_version"], p.get("label"), p.get("value"), p.get("confidence")))
                    self._answers.move_to_end(p["request_id"])
                while len(self._answers) > self.limit:
                    self._answers.popitem(last=False)
        return read

    def of(self, request_id: str) -> list[OtherAnswer]:
        with self._lock:
            return list(self._answers.get(request_id, ()))

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
