"""The size budget: every record Flywheel writes fits the limit its topics and producers share.

`KafkaSettings.max_message_bytes` is set as both the topics' `max.message.bytes` (when Flywheel
creates them) and the producers' `message.max.bytes`, so what a producer accepts the broker
accepts. A processor checks each output against the budget before producing it: an output
that would not fit never reaches `produce()` (where librdkafka would refuse it with
MSG_SIZE_TOO_LARGE), its input becomes a dead letter instead (rule 1 of failures.py), and a dead
letter bounds what it carries (deadletter.py) so it always fits.
"""
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient
from flywheel.streams.topics import topic_configs

from flywheel.errors import UserError

Headers = list[tuple[str, bytes | None]] | None

# What a record adds on the wire around key, value and headers (record and batch framing,
# varints), rounded well up so a record judged to fit is never refused by the producer.
RECORD_OVERHEAD = 1024
# Room a Prediction leaves for what downstream copies add to it (a FeedbackRecord is the
# Prediction's fields plus the label, its times and counts).
DOWNSTREAM_HEADROOM = 4096


def wire_size(value: bytes | None, key: bytes | None = None, headers: Headers = None) -> int:
    """An upper bound on what librdkafka counts against `message.max.bytes` for one record."""
    return (RECORD_OVERHEAD + len(value or b"") + len(key or b"")
            + sum(len(k) + len(v or b"") + 10 for k, v in headers or ()))


@dataclass(frozen=True)
class Budget:
    max_bytes: int

    def excess(self, value: bytes | None, key: bytes | None = None, headers: Headers = None,
               headroom: int = 0) -> int:
        """Bytes over the budget (<= 0: it fits), keeping `headroom` free."""
        return wire_size(value, key, headers) + headroom - self.max_bytes


class SizeBudgetError(UserError):
    """An existing cluster's topics refuse records Flywheel may write: the operator fixes the
    topic configs first."""


def check_output_topics(admin: AdminClient, topics: list[str], max_bytes: int) -> None:
    """At a processor's start: raise SizeBudgetError (one line) if a topic it writes refuses
    what its producer may send (an existing cluster's topics were not created by Flywheel)."""
    problems = topic_limit_problems(topic_configs(admin, topics), max_bytes)
    if problems:
        more = f" (and {len(problems) - 1} more topic(s))" if len(problems) > 1 else ""
        raise SizeBudgetError(problems[0] + more)


def topic_limit_problems(configs: dict[str, dict[str, str]], max_bytes: int) -> list[str]:
    """One line per topic whose `max.message.bytes` is below what Flywheel's producers may
    write (`configs`: topic -> its configs as the broker describes them; a topic without the
    setting takes Kafka's broker default)."""
    out = []
    for topic, config in sorted(configs.items()):
        limit = int(config.get("max.message.bytes") or KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
        if limit < max_bytes:
            out.append(f"topic {topic} accepts records up to {limit} bytes but Flywheel writes up to {max_bytes} "
                       f"(kafka.max_message_bytes): raise the topic's max.message.bytes or lower the setting")
    return out


KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
