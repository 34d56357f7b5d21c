"""Topic -> topic replay: copy the records of a time range, keys, timestamps and headers kept,
each marked `flywheel-replay: <run id>`."""
from dataclasses import dataclass

from confluent_kafka import Message
from flywheel.streams.clients import make_admin, uses_generations
from flywheel.streams.generations import physical_topics
from flywheel.streams.replay import headers
from flywheel.streams.replay.checkpoint import Checkpoints
from flywheel.streams.replay.engine import Decision, Output, ProgressCallback, Replay, ReplayOptions
from flywheel.streams.replay.errors import SourceHasGenerations
from flywheel.streams.replay.ranges import TimeRange
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import topic_partitions

SENT, SKIPPED_REPLAYED = "sent", "skipped_replayed"


@dataclass
class TopicCopy:
    run_id: str
    target: str
    keep_partition: bool          # same partition number as the source (equal partition counts)
    include_replayed: bool = False  # re-replay records that are themselves replays
    kind: str = "topic"
    marker: str = headers.REPLAY

    def decide(self, message: Message) -> Decision:
        if not self.include_replayed and headers.get(message.headers(), headers.REPLAY) is not None:
            return Decision(SKIPPED_REPLAYED)
        source = headers.origin(message.topic(), message.partition(), message.offset())
        return Decision(SENT, (Output(
            topic=self.target, value=message.value(), key=message.key(),
            headers=headers.mark(message.headers(), self.marker, self.run_id, source),
            timestamp=message.timestamp()[1],
            partition=message.partition() if self.keep_partition else None),))


def topic_replay(settings: KafkaSettings, checkpoints: Checkpoints, run_id: str, source: str, target: str,
                 window: TimeRange, options: ReplayOptions | None = None, include_replayed: bool = False,
                 on_progress: ProgressCallback | None = None) -> Replay:
    """Replay `source` over `window` into `target` (which may be `source` itself). Records keep
    their partition when both topics have as many partitions, else go by key."""
    admin = make_admin(settings)
    if uses_generations(settings):
        _one_generation(admin, source)
    counts = {t: len(topic_partitions(admin, t)) for t in (source, target)}
    copy = TopicCopy(run_id, target, keep_partition=counts[source] == counts[target],
                     include_replayed=include_replayed)
    spec = {"target": target, "include_replayed": include_replayed}
    return Replay(settings, checkpoints, run_id, source, window, copy, spec, options, on_progress)


def _one_generation(admin, source: str) -> None:
    """Refuse a logical topic the embedded broker keeps as several generations: replaying only
    its first would silently miss the rest."""
    generations = physical_topics(admin, source)
    if len(generations) > 1:
        raise SourceHasGenerations(
            f"{source} is kept by the embedded broker as {len(generations)} topics "
            f"({', '.join(generations)}), the oldest deleted as they are read: replay the one holding "
            "your range by its name (each generation's records are in time order)")
