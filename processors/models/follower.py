"""Follow the compacted `models` topic, keeping the last ModelEvent per model (the whole
deployment state). Standalone reader: no group, every partition from the beginning, so each
follower sees every model whatever else is running."""
import time

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from schemas import AvroSerde, DecodeFailure
from schemas.registry.base import SchemaRegistry
from streams.clients import make_consumer
from streams.metadata import watermarks
from streams.settings import KafkaSettings
from streams.topics import TopicCatalog, topic_partitions

from processors.models.deployment import Deployment


class ModelFollower:
    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry):
        self.topic = TopicCatalog(settings).models
        self._serde = AvroSerde(registry, "ModelEvent")
        self._consumer = make_consumer(settings, "flywheel-models-follower-unused",
                                       **{"fetch.wait.max.ms": 10})
        self._partitions = [TopicPartition(self.topic, p, OFFSET_BEGINNING)
                            for p in topic_partitions(self._consumer, self.topic)]
        self._consumer.assign(self._partitions)
        self.events: dict[str, dict] = {}          # model -> last ModelEvent
        self.skipped: list[DecodeFailure] = []

    def deployments(self) -> dict[str, Deployment]:
        return {m: Deployment.from_event(e) for m, e in self.events.items()}

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Events that arrived since the last call (in order), applied to `events`."""
        messages = self._consumer.consume(1000, timeout)
        good = [m for m in messages if m.error() is None]
        out = []
        for decoded in self._serde.decode_many([m.value() for m in good]):
            if isinstance(decoded, DecodeFailure):
                self.skipped.append(decoded)
                continue
            self.events[decoded["model"]] = decoded
            out.append(decoded)
        return out

    def catch_up(self, timeout: float = 10.0) -> list[dict]:
        """Read until the end of the topic as it is now."""
        ends = {tp.partition: watermarks(self._consumer, tp, timeout)[1] for tp in self._partitions}
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = {tp.partition: tp.offset for tp in self._consumer.position(
                [TopicPartition(self.topic, p) for p in ends])}
            if all(positions[p] >= end or end == 0 for p, end in ends.items()):
                break
            out += self.poll(0.1)
        return out

    def close(self) -> None:
        self._consumer.close()
