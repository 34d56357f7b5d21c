"""Metadata and watermark look-ups that survive a leader change.

On a Kafka cluster a partition can be without a leader for a moment: right after CreateTopics
succeeds (the controller has not elected one yet) and whenever leaders move (rolling restarts,
a broker lost). Calls made then fail with NOT_LEADER_FOR_PARTITION, UNKNOWN_TOPIC_OR_PART or
LEADER_NOT_AVAILABLE although nothing is wrong. Tansu's partitions are ready at once, which hid
this. Every metadata, watermark or offset-for-time call of Flywheel goes through `retrying`,
which retries those errors (and librdkafka's retriable ones) with exponential backoff until a
deadline, then raises `BrokerUnavailable` with one line naming what was missing.
"""
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from flywheel.streams.errors import BrokerUnavailable

T = TypeVar("T")

# Errors a healthy cluster answers while a leader is being elected or moved.
LEADER_RACES = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART,
                          KafkaError.LEADER_NOT_AVAILABLE, KafkaError._UNKNOWN_PARTITION,
                          KafkaError._TIMED_OUT})

FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0


def is_leader_race(err: KafkaError) -> bool:
    return err.code() in LEADER_RACES or err.retriable()


def attempts(timeout: float):
    """Yield once at once, then again after each backoff (doubling up to MAX_BACKOFF_S) until
    the next wait would pass `timeout` seconds from now."""
    deadline = time.monotonic() + timeout
    backoff = FIRST_BACKOFF_S
    yield
    while time.monotonic() + backoff <= deadline:
        time.sleep(backoff)
        yield
        backoff = min(MAX_BACKOFF_S, backoff * 2)


def retrying(call: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """`call()`, retried on leader races with backoff until `timeout` seconds have passed."""
    for _ in attempts(timeout):
        try:
            return call()
        except KafkaException as e:
            err: KafkaError = e.args[0]
            if not is_leader_race(err):
                break
    raise BrokerUnavailable(f"cannot {what}: {err.str()}")


def watermarks(client, tp: TopicPartition, timeout: float = 10.0) -> tuple[int, int]:
    """(low, high) watermark of one partition, asked of the partition's leader."""
    per_call = min(timeout, 5.0)
    return retrying(lambda: client.get_watermark_offsets(tp, timeout=per_call),
                    f"read the watermarks of {tp.topic}[{tp.partition}]", timeout)


def offsets_for_times(client, wanted: list[TopicPartition], timeout: float = 10.0) -> list[TopicPartition]:
    per_call = min(timeout, 5.0)
    topics = ", ".join(sorted({tp.topic for tp in wanted}))
    return retrying(lambda: client.offsets_for_times(wanted, timeout=per_call),
                    f"look up offsets by time in {topics}", timeout)


def leaderless(admin, names: list[str], timeout: float = 10.0) -> dict[str, str]:
    """Topics among `names` not yet usable, each with what is missing (empty: all are ready)."""
    topics = retrying(lambda: admin.list_topics(timeout=timeout).topics, "list topics", timeout)
    missing = {}
    for name in names:
        meta = topics.get(name)
        if meta is None or meta.error is not None:
            missing[name] = "no metadata yet" if meta is None else meta.error.str()
            continue
        without = sorted(p for p, part in meta.partitions.items() if part.leader < 0 or part.error is not None)
        if not meta.partitions or without:
            missing[name] = f"partitions {without} have no leader" if without else "no partitions yet"
    return missing


def wait_for_leaders(admin, names: list[str], timeout: float = 30.0) -> None:
    """Return once every partition of every topic in `names` has a leader; else raise
    `BrokerUnavailable` naming the topics and partitions still without one."""
    for _ in attempts(timeout):
        missing = leaderless(admin, names, timeout=min(timeout, 10.0))
        if not missing:
            return
    first = "; ".join(f"{n}: {why}" for n, why in sorted(missing.items())[:3])
    more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
    raise BrokerUnavailable(f"topics not ready after {timeout:g}s: {first}{more}")
