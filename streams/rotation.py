"""Rotate the embedded broker's topic generations (see streams/generations.py), so that what it
holds, and so its CPU per record, stays bounded however long the stack runs.

Every `check_seconds` the rotator seals the current generation of every high-volume topic once
that of one holds `generation_records` records or has been current for `generation_seconds`:
producers move to the next generation, created ahead of time and already subscribed by every
reader, so a turn changes no consumer's subscription. When a topic has no standby generation
left, the rotator creates `standby_generations` more and, in the same request, retires every old
generation that was sealed at least `keep_seconds` ago (the replay depth) and that every consumer
group reading the topic has read to its end: one rebalance per group every few turns. A group left
behind keeps its generations, and says so in the log: records are never deleted unread.
"""
import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from flywheel.streams.generations import current_generations, generation_name, retired_name, sealed_name, split
from flywheel.streams.settings import RotationSettings
from flywheel.streams.topics import TopicCatalog

log = logging.getLogger(__name__)


@dataclass
class _Topic:
    """One logical topic as the broker holds it: its generations (number -> partition count) and
    the one producers write to."""
    logical: str
    generations: dict[int, int] = field(default_factory=dict)
    current: int = 0

    @property
    def partitions(self) -> int:
        return self.generations[self.current]

    def name(self, number: int) -> str:
        return generation_name(self.logical, number)

    def standby(self) -> list[int]:
        return sorted(n for n in self.generations if n > self.current)

    def sealed(self) -> list[int]:
        return sorted(n for n in self.generations if n < self.current)


class Rotator:
    """Call `tick()` often; it acts every `check_seconds`. Holds only what it has seen of this
    broker: when each topic was first seen (the embedded broker forgets all on restart)."""

    def __init__(self, admin: AdminClient, catalog: TopicCatalog, settings: RotationSettings,
                 clock=time.monotonic):
        self.admin = admin
        self.catalog = catalog
        self.settings = settings
        self.clock = clock
        self._seen: dict[str, float] = {}    # topic (generation or marker) -> when first seen
        self._since: dict[str, tuple[str, float]] = {}   # logical -> (its current generation, since when)
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
        topics = self._topics(now)
        self._delete_retired(topics, now)
        # ListOffsets costs the broker time per batch held (17 ms at 20,000 batches): ask for the
        # current generations here, for old ones only when they may be retired.
        ends = self._ends([(t.name(t.current), t.partitions) for t in topics])
        # Every topic turns over together, so that the standby generations run out together.
        due = any(self._full(t, ends, now) for t in topics)
        create: list[tuple[str, int]] = [(sealed_name(t.name(t.current)), 1) for t in topics] if due else []
        if any(len(t.standby()) <= int(due) for t in topics):
            # Each change to what readers subscribe to costs every group a rebalance: the new
            # standby generations and the retirements go in one request.
            create += self._retirements(topics, now)
            create += [(t.name(n), t.partitions) for t in topics for n in self._more(t, due)]
        self._create(create, now)

    def _topics(self, now: float) -> list[_Topic]:
        listed = self.admin.list_topics(timeout=10).topics
        self._names = set(listed)
        self._seen = {name: self._seen.get(name, now) for name in listed}
        found: dict[str, _Topic] = {}
        for name, meta in listed.items():
            logical, number = split(name)
            if self.catalog.rotates(logical) and meta.partitions:
                found.setdefault(logical, _Topic(logical)).generations[number] = len(meta.partitions)
        current = current_generations(listed)
        for topic in found.values():
            topic.current = split(current.get(topic.logical, topic.name(max(topic.generations))))[1]
            name = topic.name(topic.current)
            if self._since.get(topic.logical, ("",))[0] != name:
                self._since[topic.logical] = (name, now)
        return list(found.values())

    def _full(self, topic: _Topic, ends: dict, now: float) -> bool:
        name = topic.name(topic.current)
        held = sum(end for (n, _), end in ends.items() if n == name)
        return held >= self.settings.generation_records or \
            now - self._since[topic.logical][1] >= self.settings.generation_seconds

    def _more(self, topic: _Topic, due: bool) -> range:
        """The numbers of the generations to create so that `standby_generations` follow the
        current one after this turn (and, if there was none to turn to, that one too)."""
        newest = max(topic.generations)
        left = len(topic.standby()) - int(due)
        return range(newest + 1, newest + 1 + self.settings.standby_generations - left)

    def _retirements(self, topics: list[_Topic], now: float) -> list[tuple[str, int]]:
        """The retired markers of every old generation sealed `keep_seconds` ago that every group
        reading its topic has read to its end."""
        ripe = {t.logical: [(t.name(n), t.generations[n]) for n in t.sealed() if self._ripe(t.name(n), now)]
                for t in topics}
        if not any(ripe.values()):
            return []
        ends = self._ends([g for gens in ripe.values() for g in gens])
        committed = self._committed(list(ends))
        for group, offsets in committed.items():
            if group not in self._moved or self._moved[group][0] != offsets:
                self._moved[group] = (offsets, now)
        return [(retired_name(name), 1) for logical, gens in ripe.items()
                for name in self._passed(logical, gens, ends, committed, now)]

    def _ripe(self, name: str, now: float) -> bool:
        """Sealed at least `keep_seconds` ago (or first seen old, its marker missing), and not
        retired yet."""
        return retired_name(name) not in self._names and \
            now - self._seen.setdefault(sealed_name(name), now) >= self.settings.keep_seconds

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

    def _passed(self, logical: str, ripe: list[tuple[str, int]], ends: dict, committed: dict,
                now: float) -> list[str]:
        """The ripe generations that hold records and every group reading the topic has
        committed to their end."""
        readers = {group: offsets for group, offsets in committed.items()
                   if any(split(name)[0] == logical for name, _ in offsets)
                   and now - self._moved[group][1] < self.settings.abandon_seconds}
        passed = []
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
            else:
                passed.append(name)
        return passed

    def _delete_retired(self, topics: list[_Topic], now: float) -> None:
        """Delete each generation retired `retire_seconds` ago (readers have dropped it by then),
        with its markers. The logical name itself is made again, empty and still sealed: tools
        and clients outside the stack look it up."""
        gone = [(t, n) for t in topics for n in t.sealed() if retired_name(t.name(n)) in self._names
                and now - self._seen[retired_name(t.name(n))] >= self.settings.retire_seconds]
        if not gone:
            return
        names = [name for t, n in gone for name in (t.name(n), retired_name(t.name(n)))
                 + ((sealed_name(t.name(n)),) if n else ())]
        for done in self.admin.delete_topics(names, operation_timeout=30).values():
            done.result()
        for topic, number in gone:
            self._kept.pop(topic.name(number), None)
            log.info("deleted %s: every reader has passed it", topic.name(number))
        self._create([(t.name(0), t.generations[0]) for t, n in gone if n == 0], now)

    def _create(self, topics: list[tuple[str, int]], now: float) -> None:
        if not topics:
            return
        specs = [self.catalog.generation_spec(name, partitions) for name, partitions in topics]
        futures = self.admin.create_topics([NewTopic(s.name, s.partitions, s.replication, config=s.config)
                                            for s in specs], operation_timeout=30)
        for name, future in futures.items():
            future.result()
            self._seen[name] = now
        log.info("started %s", ", ".join(sorted(futures)))
