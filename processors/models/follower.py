"""Follow the compacted `models` topic, keeping the last ModelEvent per model (the whole
deployment state). Standalone reader: no group, every partition from the beginning, so each
follower sees every model whatever else is running.

With a signing key configured (KafkaSettings.model_signing_key) an event that is unsigned or
signed with another key is refused before it is decoded; an event naming a model that could not
be a directory of the artifact store is refused too. A refused event changes nothing: the model
keeps the state of its last accepted event. Each refusal goes to `on_refusal`."""
import logging
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from flywheel.processors.models.deployment import Deployment
from flywheel.processors.models.errors import InvalidName
from flywheel.processors.models.refusals import Refusal
from flywheel.processors.models.signing import EventSigner
from flywheel.processors.models.store import check_name
from flywheel.schemas import AvroSerde, DecodeFailure
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.clients import make_consumer
from flywheel.streams.metadata import watermarks
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog, topic_partitions

log = logging.getLogger("flywheel.models")
UNREGISTERED = "unregistered"    # the metric label value of a model or version no ModelEvent registered


def log_refusal(refusal: Refusal) -> None:
    log.error("%s", refusal.describe())


class ModelFollower:
    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry,
                 on_refusal: Callable[[Refusal], None] = log_refusal):
        self.topic = TopicCatalog(settings).models
        self._serde = AvroSerde(registry, "ModelEvent")
        self._consumer = make_consumer(settings, "flywheel-models-follower-unused")
        self._partitions = [TopicPartition(self.topic, p, OFFSET_BEGINNING)
                            for p in topic_partitions(self._consumer, self.topic)]
        self._consumer.assign(self._partitions)
        self.events: dict[str, dict] = {}          # model -> last ModelEvent
        self.skipped: list[DecodeFailure] = []
        self._signer = EventSigner.of(settings.model_signing_key)
        self._on_refusal = on_refusal

    def label_values(self, model: str | None, version: str | None = None) -> tuple[str, str]:
        """(model, version) as metric label values: registered ones, else UNREGISTERED. Names in
        records come from whoever produced them; as label values they would be unbounded."""
        event = self.events.get(model or "")
        if event is None:
            return UNREGISTERED, UNREGISTERED
        return model, version if version in (event.get("versions") or {}) else UNREGISTERED

    def deployments(self) -> dict[str, Deployment]:
        return {m: Deployment.from_event(e) for m, e in self.events.items()}

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Events that arrived since the last call (in order), applied to `events`."""
        messages = self._consumer.consume(1000, timeout)
        good = [m for m in messages if m.error() is None and self._signed(m)]
        out = []
        for decoded in self._serde.decode_many([m.value() for m in good]):
            if isinstance(decoded, DecodeFailure):
                self.skipped.append(decoded)
                continue
            try:
                check_name("model", decoded["model"])
            except InvalidName as e:
                self._on_refusal(Refusal(decoded["model"], decoded["version"], "bad_name", str(e), decoded["at"]))
                continue
            self.events[decoded["model"]] = decoded
            out.append(decoded)
        return out

    def _signed(self, message) -> bool:
        if self._signer is None:
            return True
        reason = self._signer.refusal(message.key(), message.value(), message.headers())
        if reason is not None:
            model = (message.key() or b"").decode("utf-8", "replace")
            where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
            what = "unsigned" if reason == "unsigned" else "signed with another key, or altered since"
            self._on_refusal(Refusal(model, "?", reason, f"ModelEvent at {where} is {what} "
                                     f"(a signing key is configured)", message.timestamp()[1]))
        return reason is None

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
