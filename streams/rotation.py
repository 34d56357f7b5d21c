"""Rotate the embedded broker's topic generations (see streams/generations.py), so that what it
holds, and so its CPU per record, stays bounded however long the stack runs.

Every `check_seconds` the rotator starts the next generation of every high-volume topic once
the newest of one holds `generation_records` records or is `generation_seconds` old, and deletes an older
generation once the next one has been written to for `keep_seconds` (the replay depth) and every
consumer group that reads the topic has committed its end. A group left behind keeps its
generations, and says so in the log: records are never deleted unread.
"""
import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from flywheel.streams.generations import generation_name, retired_name, split
from flywheel.streams.settings import RotationSettings
from flywheel.streams.topics import TopicCatalog

log = logging.getLogger(__name__)


@dataclass
class _Topic:
    """One logical topic as the broker holds it: its generations (number -> partition count)."""
    logical: str
    generations: dict[int, int] = field(default_factory=dict)

    @property
    def newest(self) -> int:
        return max(self.generations)


class Rotator:
    """Call `tick()` often; it acts every `check_seconds`. Holds only what it has seen of this
    broker: when each generation was first seen (the embedded broker forgets all on restart)."""

    def __init__(self, admin: AdminClient, catalog: TopicCatalog, settings: RotationSettings,
                 clock=time.monotonic):
        self.admin = admin
        self.catalog = catalog
        self.settings = settings
        self.clock = clock
        self._seen: dict[str, float] = {}    # physical name -> when first seen
        self._names: set[str] = set()        # every topic, as last listed
        self._kept: dict[str, list[str]] = {}  # generation -> groups behind, as last logged
        self._moved: dict[str, tuple[dict, float]] = {}   # group -> (its offsets, when they last changed)
        self._next = 0.0

    def tick(self) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.settings.check_seconds
        try:
            self.rotate(now)
        except KafkaException as e:          # the broker away: try again next time
            log.warning("rotation skipped: %s", e)

    def rotate(self, now: float) -> None:
        topics = self._topics()
        for topic in topics:
            for number in topic.generations:
                self._seen.setdefault(generation_name(topic.logical, number), now)
        # ListOffsets costs the broker time per batch held (17 ms at 20,000 batches), so ask only
        # for the newest generations and the old ones past their keep window.
        newest = [(generation_name(t.logical, t.newest), t.generations[t.newest]) for t in topics]
        ripe = {t.logical: self._ripe(t, now) for t in topics}
        ends = self._ends(newest + [g for gens in ripe.values() for g in gens])
        committed = self._committed([k for k in ends if k[0] not in dict(newest)]) if any(ripe.values()) else {}
        for group, offsets in committed.items():
            if group not in self._moved or self._moved[group][0] != offsets:
                self._moved[group] = (offsets, now)
        # Every topic turns over together: a consumer group rebalances when its topics change,
        # so once per turn rather than once per topic.
        due = any(self._full(name, ends, now) for name, _ in newest)
        for topic, (_, partitions) in zip(topics, newest):
            self._delete_passed(topic.logical, ripe[topic.logical], ends, committed, now)
            if due:
                following = generation_name(topic.logical, topic.newest + 1)
                self._create(following, partitions)
                self._seen[following] = now

    def _full(self, name: str, ends: dict, now: float) -> bool:
        held = sum(end for (n, _), end in ends.items() if n == name)
        return held >= self.settings.generation_records or now - self._seen[name] >= self.settings.generation_seconds

    def _ripe(self, topic: _Topic, now: float) -> list[tuple[str, int]]:
        """(name, partitions) of each old generation whose successor started `keep_seconds` ago."""
        numbers = sorted(topic.generations)
        return [(generation_name(topic.logical, n), topic.generations[n]) for n, following in zip(numbers, numbers[1:])
                if now - self._seen[generation_name(topic.logical, following)] >= self.settings.keep_seconds]

    def _topics(self) -> list[_Topic]:
        found: dict[str, _Topic] = {}
        listed = self.admin.list_topics(timeout=10).topics
        self._names = set(listed)
        for name, meta in listed.items():
            logical, number = split(name)
            if self.catalog.rotates(logical) and meta.partitions:
                found.setdefault(logical, _Topic(logical)).generations[number] = len(meta.partitions)
        return list(found.values())

    def _ends(self, generations: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Each partition's end offset. Tansu answers at batch granularity (the last batch's base
        offset + 1), so a generation can look read a batch early; the keep window covers that."""
        wanted = {TopicPartition(name, p): OffsetSpec.latest() for name, count in generations for p in range(count)}
        if not wanted:
            return {}
        return {(tp.topic, tp.partition): future.result().offset
                for tp, future in self.admin.list_offsets(wanted, request_timeout=10).items()}

    def _committed(self, partitions: list[tuple[str, int]]) -> dict[str, dict[tuple[str, int], int]]:
        """Per consumer group, its committed offset of each of `partitions` it has committed."""
        groups = self.admin.list_consumer_groups(request_timeout=10).result().valid
        asked = [TopicPartition(t, p) for t, p in partitions]
        out = {}
        for group in groups:
            request = [ConsumerGroupTopicPartitions(group.group_id, asked)]
            answer = self.admin.list_consumer_group_offsets(request, request_timeout=10)
            result = answer[group.group_id].result()
            out[group.group_id] = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions
                                   if tp.offset >= 0 and tp.error is None}
        return out

    def _delete_passed(self, logical: str, ripe: list[tuple[str, int]], ends: dict, committed: dict,
                       now: float) -> None:
        """Retire, then delete, each ripe generation that holds records once every group reading
        the topic has committed its end."""
        readers = {group: offsets for group, offsets in committed.items()
                   if any(split(name)[0] == logical for name, _ in offsets)
                   and now - self._moved[group][1] < self.settings.abandon_seconds}
        for name, count in ripe:
            held = {p: ends[(name, p)] for p in range(count) if ends[(name, p)] > 0}
            if not held and split(name)[1] == 0:
                continue           # the logical name itself, remade empty once read: it stays
            # A transactional partition ends in a commit marker that readers never commit past
            # (they commit the record after their last), and Tansu reports its end as the
            # marker's offset + 1: one short of the end is read.
            behind = [group for group, offsets in readers.items()
                      if any(offsets.get((name, p), 0) < end - 1 for p, end in held.items())]
            if behind:
                if self._kept.get(name) != behind:
                    log.warning("keeping %s: consumer group(s) %s have not read it to its end", name, ", ".join(behind))
                    self._kept[name] = behind
                continue
            marker = retired_name(name)
            if marker not in self._names:
                self._create(marker, 1)
                self._seen[marker] = now
            elif now - self._seen.setdefault(marker, now) >= self.settings.retire_seconds:
                self._delete(name, count)

    def _delete(self, name: str, partitions: int) -> None:
        marker = retired_name(name)
        for done in self.admin.delete_topics([name, marker], operation_timeout=30).values():
            done.result()
        self._kept.pop(name, None)
        log.info("deleted %s: every reader has passed it", name)
        if split(name)[1] == 0:
            # The logical name stays a topic (empty): tools and clients outside the stack look it up.
            self._create(name, partitions)

    def _create(self, name: str, partitions: int) -> None:
        spec = self.catalog.generation_spec(name, partitions)
        future = self.admin.create_topics([NewTopic(spec.name, spec.partitions, spec.replication,
                                                    config=spec.config)], operation_timeout=30)[name]
        future.result()
        log.info("started %s", name)
