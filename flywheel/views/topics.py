"""History that only a topic holds: the dead letters (the store keeps none). The embedded broker
keeps them in memory, so they are readable while a stack runs and gone after it stops."""
from dataclasses import dataclass

from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.subscriber import Subscriber
from flywheel.streams.topics import TopicCatalog


@dataclass(frozen=True)
class DeadLetterCount:
    at: int                                   # failed_at, epoch ms
    reason: str
    processor: str
    source_topic: str


def read_all(kafka: KafkaSettings, registry: SchemaRegistry, topic: str, idle: float = 1.0) -> list[dict]:
    """Every decodable record of the topic, read until a poll of `idle` seconds brings nothing
    (the end of the topic as it is)."""
    out: list[dict] = []
    with Subscriber(kafka, registry, topic, TopicCatalog(kafka).record_name(topic), start="earliest") as sub:
        while batch := sub.poll_batch(5000, idle):
            out += [r.value for r in batch if isinstance(r.value, dict)]
    return out


def dead_letter_counts(records: list[dict]) -> list[DeadLetterCount]:
    """The fields of DeadLetter records a view needs (the payloads can be large; they are dropped)."""
    return [DeadLetterCount(r["failed_at"], r["reason"], r["processor"], r["source_topic"]) for r in records]
