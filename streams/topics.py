"""The topic catalogue: every topic name, behind one prefix, with its partitions and configs."""
import re
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from flywheel.streams.errors import BrokerUnavailable, TopicsNotCopartitioned, UnknownTopic
from flywheel.streams.generations import SUFFIX, logical_name
from flywheel.streams.metadata import retrying, wait_for_leaders
from flywheel.streams.settings import KafkaSettings

# Partitions of the `leadership` topic: the most processes of one kind that can share decisions
# (processors/runtime/leadership.py); models are spread over them by hash.
LEADERSHIP_PARTITIONS = 12


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


class TopicCatalog:
    """Every topic name behind the prefix. `<model>.requests`, `.predictions` and `.shadow` exist per model."""

    def __init__(self, settings: KafkaSettings):
        self._s = settings

    def _name(self, base: str) -> str:
        return f"{self._s.topic_prefix}{base}"

    def requests(self, model: str) -> str:
        return self._name(f"{model}.requests")

    def predictions(self, model: str) -> str:
        return self._name(f"{model}.predictions")

    def shadow(self, model: str) -> str:
        """Shadow versions' predictions: recorded for comparison, never on the prediction topic."""
        return self._name(f"{model}.shadow")

    def predictions_pattern(self) -> str:
        """Every model's predictions topic, every generation of each (see streams/generations.py),
        as one subscription (librdkafka: a leading ^ is a regex)."""
        return f"^{re.escape(self._s.topic_prefix)}.+\\.predictions({SUFFIX.pattern[:-1]})?$"

    @property
    def labels(self) -> str:
        return self._name("labels")

    @property
    def feedback(self) -> str:
        return self._name("feedback")

    @property
    def review(self) -> str:
        return self._name("review")

    @property
    def deadletter(self) -> str:
        return self._name("deadletter")

    @property
    def retrain(self) -> str:
        return self._name("retrain")

    @property
    def models(self) -> str:
        return self._name("models")

    @property
    def leadership(self) -> str:
        """Holds no records: its partitions, assigned by consumer groups, say which trigger and
        which rollout process decides for which model."""
        return self._name("leadership")

    def rotates(self, topic: str) -> bool:
        """Whether a logical topic is written as generations where generations are on: the
        high-volume ones (requests, predictions, shadow, labels, feedback). Not `models`
        (compacted, read whole by every worker), `retrain` (a few events a day), nor
        `deadletter` and `review`, which people read days later and nothing commits past."""
        try:
            self.record_name(topic)
        except UnknownTopic:
            return False
        return topic not in (self.models, self.retrain, self.deadletter, self.review)

    def record_name(self, topic: str) -> str:
        """Which record type a topic of this catalogue carries (any generation of it)."""
        topic = logical_name(topic)
        fixed = {self.labels: "GroundTruth", self.feedback: "FeedbackRecord", self.review: "ReviewItem",
                 self.deadletter: "DeadLetter", self.retrain: "RetrainRequested", self.models: "ModelEvent"}
        if topic in fixed:
            return fixed[topic]
        if topic.startswith(self._s.topic_prefix) and topic.endswith(".requests"):
            return "InferenceRequest"
        if topic.startswith(self._s.topic_prefix) and topic.endswith((".predictions", ".shadow")):
            return "Prediction"
        raise UnknownTopic(f"topic {topic} is not one of Flywheel's (prefix {self._s.topic_prefix!r})")

    def _spec(self, name: str, partitions: int | None = None, **config: str) -> TopicSpec:
        # Every topic takes the records Flywheel's producers may write (message.max.bytes).
        config = {"max.message.bytes": str(self._s.max_message_bytes), **config}
        return TopicSpec(name, partitions or self._s.partitions, self._s.replication, config)

    def generation_spec(self, name: str, partitions: int) -> TopicSpec:
        """A generation of a rotating topic (see streams/rotation.py): made like the first."""
        return self._spec(name, partitions)

    def core(self) -> list[TopicSpec]:
        return [
            self._spec(self.labels),
            self._spec(self.feedback),
            self._spec(self.review),
            self._spec(self.deadletter),
            self._spec(self.retrain, 1),
            # Compacted: the last event per model is the model's whole deployment state.
            self._spec(self.models, 1, **{"cleanup.policy": "compact"}),
            self._spec(self.leadership, LEADERSHIP_PARTITIONS),
        ]

    def for_model(self, model: str) -> list[TopicSpec]:
        return [self._spec(self.requests(model)), self._spec(self.predictions(model)),
                self._spec(self.shadow(model))]


def topic_partitions(client, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition numbers of a topic, via a consumer, producer or admin client."""
    def look():
        meta = client.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is not None and meta.error is not None and meta.error.code() == KafkaError.LEADER_NOT_AVAILABLE:
            raise KafkaException(meta.error)  # being created or moved: retried
        return meta
    meta = retrying(look, f"read metadata of {topic}", timeout)
    if meta is None or meta.error is not None or not meta.partitions:
        raise UnknownTopic(f"topic {topic} does not exist: create it with `flywheel topics --create` or `flywheel up`")
    return sorted(meta.partitions)


def partitions_of(admin: AdminClient, logical: str, timeout: float = 30.0) -> int | None:
    """Partitions of a logical topic on the cluster (its newest generation where it has several),
    None while it does not exist."""
    listed = retrying(lambda: admin.list_topics(timeout=timeout).topics, "list topics", timeout)
    found = sorted((name, len(meta.partitions)) for name, meta in listed.items()
                   if logical_name(name) == logical and meta.partitions)
    return found[-1][1] if found else None


def check_copartitioned(client, topic: str, pattern: str, timeout: float = 10.0) -> None:
    """Raise TopicsNotCopartitioned unless every existing topic matching `pattern` (a librdkafka
    subscription regex, leading ^) has as many partitions as `topic`. Records keyed alike then land
    in the same partition number of each (one partitioner for every producer: librdkafka's), and a
    range assignment gives those partitions to the same group member."""
    meta = retrying(lambda: client.list_topics(timeout=timeout).topics, "list topics", timeout)
    if topic not in meta or meta[topic].error is not None:
        raise UnknownTopic(f"topic {topic} does not exist: create it with `flywheel topics --create` or `flywheel up`")
    want = len(meta[topic].partitions)
    wrong = sorted(f"{name} ({len(m.partitions)})" for name, m in meta.items()
                   if re.match(pattern, name) and len(m.partitions) != want)
    if wrong:
        raise TopicsNotCopartitioned(f"{', '.join(wrong)} must have as many partitions as {topic} ({want}): "
                                     "records of one key must meet in one consumer")


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet and return the names created, once every
    partition of every topic in `specs` has a leader (a new topic on a Kafka cluster has none
    for a moment after CreateTopics succeeds). Safe to repeat."""
    existing = set(retrying(lambda: admin.list_topics(timeout=timeout).topics, "list topics", timeout))
    missing = [s for s in specs if s.name not in existing]
    created = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication, config=s.config) for s in missing],
            operation_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerUnavailable(f"cannot create topic {name}: {e.args[0].str()}") from None
    wait_for_leaders(admin, [s.name for s in specs], timeout)
    return created


def topic_configs(admin: AdminClient, topics: list[str], timeout: float = 15.0) -> dict[str, dict[str, str]]:
    """Each existing topic's configs as the cluster describes them (name -> value); topics that
    do not exist are left out."""
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
    out = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        try:
            out[resource.name] = {name: entry.value for name, entry in future.result().items()}
        except KafkaException as e:
            if e.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise BrokerUnavailable(f"cannot describe topic {resource.name}: {e}") from e
    return out
