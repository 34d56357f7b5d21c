"""Consumer lag per assigned partition: the high watermark the consumer last saw in a fetch
(cached, so no broker round trip) minus its position."""
import time

from confluent_kafka import Consumer, KafkaException
from prometheus_client import Gauge


class LagTracker:
    """Call `update()` once per loop iteration; it refreshes the gauge at most every
    `interval_s` and forgets partitions the consumer no longer owns."""

    def __init__(self, consumer: Consumer, gauge: Gauge, processor: str, interval_s: float = 2.0):
        self.consumer = consumer
        self.gauge = gauge
        self.processor = processor
        self.interval_s = interval_s
        self._next = 0.0
        self._shown: set[tuple[str, str]] = set()

    def update(self, force: bool = False) -> dict[tuple[str, int], int]:
        now = time.monotonic()
        if not force and now < self._next:
            return {}
        self._next = now + self.interval_s
        try:
            positions = self.consumer.position(self.consumer.assignment())
        except KafkaException:
            return {}
        lags: dict[tuple[str, int], int] = {}
        committed = self._committed([tp for tp in positions if tp.offset < 0])
        for tp in positions:
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue
            position = tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), low)
            lags[(tp.topic, tp.partition)] = max(0, high - position)
        shown = {(t, str(p)) for t, p in lags}
        for topic, partition in self._shown - shown:
            self.gauge.remove(self.processor, topic, partition)
        for (topic, partition), lag in lags.items():
            self.gauge.labels(self.processor, topic, str(partition)).set(lag)
        self._shown = shown
        return lags

    def _committed(self, unread: list) -> dict[tuple[str, int], int]:
        """The committed offsets of partitions with no position yet: after a rebalance, a
        partition read to its end (an old topic generation) has none until a record arrives,
        and counting from its low watermark would show all of it as lag."""
        if not unread:
            return {}
        try:
            found = self.consumer.committed(unread, timeout=5)
        except KafkaException:
            return {}
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
