"""Topic generations: on the embedded broker one logical topic is a sequence of physical ones.

The embedded broker (Tansu 0.6, memory storage) keeps every batch it is given, applies no
retention, refuses DeleteRecords, and lists every batch a partition holds on each fetch that
finds records and on each ListOffsets: its CPU per record grows with the batches a partition
holds. DeleteTopics frees them. So a high-volume logical topic `X` is written as generations
`X` (generation 0), `X.g000001`, `X.g000002`, ...: producers write to the current one (the
oldest not sealed), readers subscribe to all of them by name, and `streams.rotation` seals the
current one when it is full and deletes the old ones its readers have passed.

A consumer group rebalances whenever its subscription changes, a pause of seconds on this
broker. So the rotator creates generations ahead of need (standby, empty, already subscribed):
sealing the current one moves producers to the next without changing any subscription, and the
changes that do (new standby generations, retired old ones) come together, once every few turns.

Here: the names, and the producer and consumer that route a logical name to its generations.
Both are used only where generations are in use (`streams.clients.uses_generations`: the
embedded broker, or a broker found holding them); on a Kafka cluster nothing here is involved.
"""
import re
import time

from confluent_kafka import Consumer, KafkaException, Producer

SUFFIX = re.compile(r"\.g(\d{6})$")
RETIRED = ".retired"
SEALED = ".sealed"
REFRESH_SECONDS = 2.0          # how stale a producer's idea of the newest generation may be
# A reader stops fetching a sealed generation only this long after it first saw the seal: producers
# move on at their next listing, and records already on their way land meanwhile.
SETTLE_SECONDS = 10.0
# How often a reader fetches a sealed partition it paused again, for one listing, to learn its end
# (no fetch tells it otherwise): a record written there later, by a producer that missed the seal,
# waits at most this long.
RECHECK_SECONDS = 30.0


def generation_name(logical: str, number: int) -> str:
    return logical if number == 0 else f"{logical}.g{number:06d}"


def split(physical: str) -> tuple[str, int]:
    """(logical name, generation number) of a physical topic name."""
    match = SUFFIX.search(physical)
    return (physical[:match.start()], int(match.group(1))) if match else (physical, 0)


def retired_name(generation: str) -> str:
    """The marker topic that says `generation` is about to be deleted: readers drop it from
    their subscription first (a consumer subscribed to a topic being deleted dies of SIGSEGV
    in librdkafka, checked with confluent-kafka 2.16 on the embedded broker)."""
    return f"{generation}{RETIRED}"


def sealed_name(generation: str) -> str:
    """The marker topic that says `generation` takes no more records: producers write to the
    next. A topic rather than a record, so that producers and readers learn everything from the
    topic listing they already make."""
    return f"{generation}{SEALED}"


def current_generations(names) -> dict[str, str]:
    """Per logical topic among topic names, the generation producers write to: the oldest live
    (not retired) one that is not sealed, else the newest."""
    names = set(names)
    found: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        if not name.endswith((RETIRED, SEALED)) and retired_name(name) not in names:
            logical, number = split(name)
            found.setdefault(logical, []).append((number, name))
    current = {}
    for logical, generations in found.items():
        generations.sort()
        current[logical] = next((name for _, name in generations if sealed_name(name) not in names),
                                generations[-1][1])
    return current


def logical_name(physical: str) -> str:
    return split(physical)[0]


def generations_regex(logical: str) -> str:
    """A librdkafka subscription (leading ^) matching every generation of `logical`."""
    return f"^{re.escape(logical)}({SUFFIX.pattern[:-1]})?$"


def generations_of(names, logical: str) -> list[str]:
    """The generations of `logical` among topic names, oldest first."""
    found = [(split(n)[1], n) for n in names if split(n)[0] == logical]
    return [name for _, name in sorted(found)]


def physical_topics(client, logical: str, timeout: float = 10.0) -> list[str]:
    """Every generation of `logical` that may hold records, up to the current one (the standby
    ones after it are empty); just `logical` on a cluster without generations."""
    names = client.list_topics(timeout=timeout).topics
    current = current_generations(names).get(logical, logical)
    held = generations_of(names, logical)
    return held[:held.index(current) + 1] if current in held else [logical]


class RoutingProducer(Producer):
    """A Producer whose `produce` writes a logical topic's records (or a record addressed to an
    old generation, e.g. a dead letter's source being redriven) to its current generation."""

    def __init__(self, conf: dict, rotating):
        super().__init__(conf)
        self._rotating = rotating            # logical name -> bool: which topics have generations
        self._current: dict[str, str] = {}
        self._fetched = float("-inf")

    def produce(self, topic, *args, **kwargs):
        return super().produce(self.current(topic), *args, **kwargs)

    def current(self, topic: str) -> str:
        logical = logical_name(topic)
        if not self._rotating(logical):
            return topic
        if time.monotonic() - self._fetched > REFRESH_SECONDS:
            self._refresh()
        return self._current.get(logical, logical)

    def _refresh(self) -> None:
        self._fetched = time.monotonic()
        try:
            names = self.list_topics(timeout=5).topics
        except KafkaException:   # broker away: keep the last answer; the produce itself will queue
            return
        self._current = current_generations(names)


class RoutingConsumer(Consumer):
    """A Consumer whose `subscribe` reads every generation of each topic it is given and every
    topic its patterns match, by name, listed again every REFRESH_SECONDS as generations come
    and go (a retired one, see `retired_name`, is dropped before it is deleted). By name
    because the embedded broker's consumers never see a topic created after a regex
    subscription (checked: no new assignment within 20 s)."""

    def __init__(self, conf: dict, rotating):
        super().__init__(conf)
        self._rotating = rotating
        self._wanted: list[str] = []
        self._kwargs: dict = {}
        self._subscribed: list[str] = []
        self._listed = float("-inf")
        self._seals: dict[str, float] = {}                   # seal marker -> when first seen
        self._paused: dict[tuple[str, int], float] = {}      # partition -> when its end was last asked

    def subscribe(self, topics, **kwargs):
        self._wanted, self._kwargs, self._subscribed = list(topics), kwargs, []
        self._listed = float("-inf")
        self._follow()

    def unsubscribe(self):
        self._wanted, self._subscribed = [], []
        return super().unsubscribe()

    def consume(self, *args, **kwargs):
        self._follow()
        return super().consume(*args, **kwargs)

    def poll(self, *args, **kwargs):
        self._follow()
        return super().poll(*args, **kwargs)

    def seek(self, partition):
        """A partition paused as finished is resumed when rewound (a batch redone after a failed
        commit), or its records would never be fetched again."""
        self.resume([partition])
        return super().seek(partition)

    def _follow(self) -> None:
        """Subscribe again when the topics the subscription stands for have changed, and stop
        fetching the sealed generations read to their end."""
        if not self._wanted or time.monotonic() - self._listed < REFRESH_SECONDS:
            return
        self._listed = time.monotonic()
        try:
            names = self.list_topics(timeout=5).topics
        except KafkaException:
            if self._subscribed:
                return       # broker away: keep what we have
            names = None
        topics = self._expand(names) if names is not None else [
            t if t.startswith("^") or not self._rotating(t) else generations_regex(t) for t in self._wanted]
        if topics != self._subscribed:
            self._subscribed = topics
            super().subscribe(topics, **self._kwargs)
        if names is not None:
            self._pause_finished(names)

    def _pause_finished(self, names) -> None:
        """Pause the partitions of sealed generations this consumer has read to the end: a
        reader kept fetching them until they were deleted, keep_seconds and more, and each
        fetch costs the embedded broker CPU (measured on a bare broker, a reader at the end of
        8,000 batches in 4 partitions: 0.06 of a core with the worker's 5 ms fetch wait, 0.01
        with the others' 100 ms; paused, none). Only SETTLE_SECONDS after the seal was first
        seen; and a paused partition is fetched again for one listing every RECHECK_SECONDS,
        which brings its end up to date (a fetch at a partition's end costs Tansu no listing of
        its batches; ListOffsets does, and asking for each paused partition's end blocked the
        reader once per partition). A partition whose position is behind its end stays resumed:
        a rebalance gave it back from the committed offset (librdkafka keeps it paused), or a
        late record arrived. Pausing at the seal with no second look stranded the records
        producers wrote before they saw it, until the next rebalance."""
        now = time.monotonic()
        self._seals = {n: self._seals.get(n, now) for n in names if n.endswith(SEALED)}
        sealed = [tp for tp in self.assignment()
                  if now - self._seals.get(sealed_name(tp.topic), now) >= SETTLE_SECONDS]
        finished, unfinished = [], []
        for tp in self.position(sealed) if sealed else []:
            key = (tp.topic, tp.partition)
            _, end = self.get_watermark_offsets(tp, cached=True)
            due = now - self._paused.get(key, now) >= RECHECK_SECONDS
            (finished if 0 <= end <= tp.offset and not due else unfinished).append(tp)
        self._paused = {key: self._paused.get(key, now) for key in ((tp.topic, tp.partition) for tp in finished)}
        if finished:
            self.pause(finished)
        if unfinished:
            self.resume(unfinished)

    def _expand(self, names) -> list[str]:
        live = [n for n in names if retired_name(n) not in names and not n.endswith((RETIRED, SEALED))]
        found: set[str] = set()
        for wanted in self._wanted:
            if wanted.startswith("^"):
                found |= {n for n in live if re.match(wanted, n)} or {wanted}
            elif self._rotating(wanted):
                found |= set(generations_of(live, wanted)) or {wanted}
            else:
                found.add(wanted)
        return sorted(found)
