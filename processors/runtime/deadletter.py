"""Dead letters: a record a processor cannot handle goes to `deadletter` whole (original key,
bytes and headers, where it came from, why), so the partition moves on and nothing is lost.

The writer only builds and encodes; the caller produces through its batch committer, so a dead
letter is part of the same transaction as the batch's other outputs and its input offsets.
"""
import hashlib
import time
from typing import Protocol

from confluent_kafka import Message
from flywheel.processors.runtime.budget import Budget
from flywheel.schemas import AvroSerde
from flywheel.streams.settings import KafkaSettings
from prometheus_client import Counter

Headers = list[tuple[str, bytes | None]]


class Output(Protocol):
    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None) -> None: ...


class DeadLetterWriter:
    def __init__(self, serde: AvroSerde, topic: str, processor: str, counter: Counter | None = None,
                 max_bytes: int = KafkaSettings.max_message_bytes):
        if serde.record_name != "DeadLetter":
            raise ValueError(f"a dead-letter writer needs the DeadLetter serde, not {serde.record_name}")
        self.serde = serde
        self.topic = topic
        self.processor = processor
        self.counter = counter  # flywheel_dead_letters_total{processor,reason}
        self.budget = Budget(max_bytes)

    def record(self, reason: str, detail: str, *, topic: str, partition: int, offset: int,
               key: bytes | None, value: bytes | None, headers: Headers | None = None,
               timestamp: int | None = None, attempt: int = 1) -> dict:
        return {
            "reason": reason, "detail": detail[:2000], "processor": self.processor,
            "source_topic": topic, "source_partition": partition, "source_offset": offset,
            "source_timestamp": timestamp, "key": key, "payload": value,
            # Avro maps hold one value per name: a repeated header keeps its last value.
            "headers": {k: (v or b"") for k, v in headers or ()},
            "failed_at": int(time.time() * 1000), "attempt": attempt,
        }

    def from_message(self, msg: Message, reason: str, detail: str) -> dict:
        kind, ts = msg.timestamp()
        return self.record(reason, detail, topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                           key=msg.key(), value=msg.value(), headers=msg.headers(),
                           timestamp=ts if kind else None)

    def send(self, out: Output, record: dict) -> None:
        """Encode and produce one dead letter, keyed by the original key, carrying the original
        headers (so replay marks travel with it), cut to fit the size budget (`_cut`)."""
        value = self.serde.encode(record)
        headers = [(k, v) for k, v in record["headers"].items()]
        excess = self.budget.excess(value, record["key"], headers)
        if excess > 0:
            record = self._cut(record, headers, excess)
            value = self.serde.encode(record)
            headers = [(k, v) for k, v in record["headers"].items()]
        out.produce(self.topic, value, key=record["key"], headers=headers or None)
        if self.counter is not None:
            self.counter.labels(self.processor, record["reason"]).inc()

    def _cut(self, record: dict, headers: Headers, excess: int) -> dict:
        """A dead letter `excess` bytes over the budget, cut to fit: it keeps the start of the
        original payload and says in its detail how long the original was and its sha256
        (headers and key are dropped too if they alone are over)."""
        payload, key = record["payload"] or b"", record["key"]
        notes = []
        # The note itself adds bytes to detail (at most its 2000 characters): leave room for it.
        keep = max(0, len(payload) - excess - 2000)
        if keep < len(payload):
            notes.append(f"payload cut to its first {keep} of {len(payload)} bytes "
                         f"(sha256 {hashlib.sha256(payload).hexdigest()})")
            payload = payload[:keep]
        if self.budget.excess(payload, key, headers) + 2000 > 0:
            notes.append(f"{len(headers)} header(s) and the key dropped: too large to carry")
            headers, key = [], None
        detail = f"{record['detail']} [{'; '.join(notes)}]"
        return {**record, "payload": payload, "key": key, "headers": dict(headers),
                "detail": detail[-2000:] if len(detail) > 2000 else detail}

    def send_message(self, out: Output, msg: Message, reason: str, detail: str) -> None:
        self.send(out, self.from_message(msg, reason, detail))
