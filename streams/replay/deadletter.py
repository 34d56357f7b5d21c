"""Dead-letter re-drive: after a fix, send the dead letters that now pass back to their
original topic (original key, headers, partition and timestamp, plus `flywheel-redrive`);
those that still fail become a new DeadLetter with the new reason and attempt + 1. The old
record stays in the topic (topics are append-only); the run's handled ledger keeps a later run
from re-driving it again. Every selected dead letter ends as exactly one of the two."""
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Message
from flywheel.schemas import AvroSerde, SerdeError
from flywheel.schemas.errors import FeatureProblem
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.clients import make_admin
from flywheel.streams.errors import UnknownTopic
from flywheel.streams.replay import headers
from flywheel.streams.replay.checkpoint import Checkpoints
from flywheel.streams.replay.engine import Decision, Output, ProgressCallback, Replay, ReplayOptions
from flywheel.streams.replay.ranges import TimeRange
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog, topic_partitions

REDRIVEN, STILL_DEAD = "redriven", "still_dead"
NOT_SELECTED, ALREADY_HANDLED, UNREADABLE = "not_selected", "already_handled", "unreadable"
PROCESSOR = "replay"

# Raises FeatureProblem (or SerdeError) when a decoded record of this type is still not servable,
# e.g. an InferenceRequest checked against its model's current feature spec.
Validator = Callable[[str, dict], None]


@dataclass(frozen=True)
class DeadLetterFilter:
    reasons: frozenset[str] = frozenset()      # empty: any
    processors: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()

    def selects(self, dead: dict) -> bool:
        return all(not wanted or dead[name] in wanted for name, wanted in
                   (("reason", self.reasons), ("processor", self.processors),
                    ("source_topic", self.source_topics)))

    def to_dict(self) -> dict:
        return {"reasons": sorted(self.reasons), "processors": sorted(self.processors),
                "source_topics": sorted(self.source_topics)}


@dataclass
class DeadLetterRedrive:
    run_id: str
    catalog: TopicCatalog
    registry: SchemaRegistry
    checkpoints: Checkpoints
    partition_counts: Callable[[str], int]   # raises UnknownTopic for a topic that is gone
    selection: DeadLetterFilter = field(default_factory=DeadLetterFilter)
    validate: Validator | None = None
    include_handled: bool = False
    clock: Callable[[], int] = lambda: int(time.time() * 1000)
    kind: str = "dead-letters"
    marker: str = headers.REDRIVE

    def __post_init__(self):
        self._serdes: dict[str, AvroSerde] = {}
        self._dead = self._serde("DeadLetter")

    def decide(self, message: Message) -> Decision:
        try:
            dead = self._dead.decode(message.value())
        except SerdeError:
            return Decision(UNREADABLE)  # not a DeadLetter: nothing to re-drive, left where it is
        if not self.selection.selects(dead):
            return Decision(NOT_SELECTED)
        if not self.include_handled and self.checkpoints.handled_by(
                message.topic(), message.partition(), message.offset()) not in (None, self.run_id):
            return Decision(ALREADY_HANDLED)
        source = headers.origin(message.topic(), message.partition(), message.offset())
        problem = self._problem(dead)
        if problem is None:
            return Decision(REDRIVEN, (self._back_home(dead, source),), handled=True)
        return Decision(STILL_DEAD, (self._still_dead(dead, message, source, *problem),), handled=True)

    def _problem(self, dead: dict) -> tuple[str, str] | None:
        """(reason, detail) if the original payload still fails, else None."""
        try:
            self.partition_counts(dead["source_topic"])
            record_name = self.catalog.record_name(dead["source_topic"])
        except UnknownTopic as e:
            return "unknown_topic", str(e)
        try:
            decoded = self._serde(record_name).decode(dead["payload"])
            if self.validate is not None:
                self.validate(record_name, decoded)
        except SerdeError as e:
            return e.reason, str(e)
        except FeatureProblem as e:
            return e.reason, str(e)
        return None

    def _back_home(self, dead: dict, source: str) -> Output:
        topic, partition = dead["source_topic"], dead["source_partition"]
        return Output(topic=topic, value=dead["payload"], key=dead["key"],
                      headers=headers.mark(list(dead["headers"].items()), self.marker, self.run_id, source),
                      timestamp=dead["source_timestamp"],
                      partition=partition if 0 <= partition < self.partition_counts(topic) else None)

    def _still_dead(self, dead: dict, message: Message, source: str, reason: str, detail: str) -> Output:
        again = {**dead, "reason": reason, "detail": detail, "processor": PROCESSOR,
                 "failed_at": self.clock(), "attempt": dead["attempt"] + 1}
        return Output(topic=message.topic(), value=self._dead.encode(again), key=message.key(),
                      headers=headers.mark(None, self.marker, self.run_id, source))

    def _serde(self, record_name: str) -> AvroSerde:
        if record_name not in self._serdes:
            self._serdes[record_name] = AvroSerde(self.registry, record_name)
        return self._serdes[record_name]


def dead_letter_redrive(settings: KafkaSettings, registry: SchemaRegistry, checkpoints: Checkpoints,
                        run_id: str, window: TimeRange, selection: DeadLetterFilter | None = None,
                        validate: Validator | None = None, options: ReplayOptions | None = None,
                        include_handled: bool = False, on_progress: ProgressCallback | None = None) -> Replay:
    """Re-drive the dead letters of `window` (their failure time) that `selection` picks."""
    catalog = TopicCatalog(settings)
    admin = make_admin(settings)
    counts: dict[str, int] = {}

    def partition_count(topic: str) -> int:
        if topic not in counts:
            counts[topic] = len(topic_partitions(admin, topic))
        return counts[topic]

    selection = selection or DeadLetterFilter()
    redrive = DeadLetterRedrive(run_id, catalog, registry, checkpoints, partition_count, selection,
                                validate, include_handled)
    spec = {"filter": selection.to_dict(), "include_handled": include_handled}
    return Replay(settings, checkpoints, run_id, catalog.deadletter, window, redrive, spec, options, on_progress)
