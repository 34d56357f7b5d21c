"""History that only a topic holds: the dead letters (the store keeps none). The embedded broker
keeps them in memory, so they are readable while a stack runs and gone after it stops.

A `TopicTail` reads a topic from its beginning and then follows it, for the live view; `read_all`
drains one for the report.
"""
from collections import Counter
from dataclasses import dataclass

from schemas.registry.base import SchemaRegistry
from streams.settings import KafkaSettings
from streams.subscriber import Subscriber
from streams.topics import TopicCatalog


@dataclass(frozen=True)
class DeadLetterCount:
    at: int                                   # failed_at, epoch ms
    reason: str
    processor: str
    source_topic: str


class TopicTail:
    """Every decodable record of one topic, oldest first, kept as it arrives."""

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, topic: str):
        catalog = TopicCatalog(kafka)
        self._subscriber = Subscriber(kafka, registry, topic, catalog.record_name(topic), start="earliest")
        self.records: list[dict] = []

    def poll(self, timeout: float = 0.0) -> list[dict]:
        fresh = [r.value for r in self._subscriber.poll_batch(5000, timeout) if isinstance(r.value, dict)]
        self.records += fresh
        return fresh

    def drain(self, idle: float = 1.0) -> list[dict]:
        """Read until a poll of `idle` seconds brings nothing (the end of the topic as it is)."""
        while self.poll(idle):
            pass
        return self.records

    def close(self) -> None:
        self._subscriber.close()


def read_all(kafka: KafkaSettings, registry: SchemaRegistry, topic: str) -> list[dict]:
    tail = TopicTail(kafka, registry, topic)
    try:
        return tail.drain()
    finally:
        tail.close()


def dead_letter_counts(records: list[dict]) -> list[DeadLetterCount]:
    """The fields of DeadLetter records a view needs (the payloads can be large; they are dropped)."""
    return [DeadLetterCount(r["failed_at"], r["reason"], r["processor"], r["source_topic"]) for r in records]


def by_reason(letters: list[DeadLetterCount]) -> Counter:
    return Counter(d.reason for d in letters)
