"""A producer that remembers delivery failures so `flush()` can surface them as one error."""
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from flywheel.streams.errors import DeliveryFailed, RecordTooLarge


class TrackedProducer:
    def __init__(self, producer: Producer):
        self.producer = producer
        self.delivered = 0
        self._failures: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self._failures.append(f"{msg.topic()} key={msg.key()!r}: {err.str()}")

    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers=None,
                timestamp: int | None = None) -> None:
        kwargs = {"timestamp": timestamp} if timestamp else {}
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers,
                                      on_delivery=self._on_delivery, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self.producer.poll(0.05)
            except KafkaException as e:
                ours = _ours(topic, e.args[0])
                if ours is None:
                    raise
                raise ours from e
        self.producer.poll(0)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every record; raise DeliveryFailed naming what did not arrive."""
        remaining = self.producer.flush(timeout)
        if remaining:
            self._failures.append(f"{remaining} record(s) still queued after {timeout:.0f}s")
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryFailed(failures)
        return self.delivered


def _ours(topic: str, error: KafkaError) -> Exception | None:
    """The client's own refusal of one record, as ours: too big is the record's content. Any
    other (fatal, wrong state) is a bug: None, and it propagates as it is."""
    if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        return RecordTooLarge(f"record for {topic} is larger than the producer's message.max.bytes: {error.str()}")
    return None
