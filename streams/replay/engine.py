"""The replay engine: read a source topic over a time range, decide per record what to write,
write it in Kafka transactions, checkpoint per run id, resume without duplicates.

Why a resumed run sends each record once in total
-------------------------------------------------
Each batch is one Kafka transaction (transactional.id `flywheel-replay-<run id>`); after it
commits, the run's SQLite checkpoint (next source offset per partition, and per target
partition the offset after this run's last confirmed record) is saved. Two windows remain:

1. killed before the commit: on Apache Kafka the new attempt's `init_transactions` with the
   same transactional.id fences the old producer and aborts its open transaction, so
   read_committed readers never see those records. (Tansu instead exposes them.)
2. killed after the commit, before the checkpoint is saved: the records are visible but the
   checkpoint does not know.

Both are closed the same way: every output carries `flywheel-origin` (source topic/partition/
offset) and the run's marker header. On resume, after fencing, the run reads each target
partition from its checkpointed offset to the end and collects the origins its earlier attempt
made visible; those source records are counted but not sent again. Records in an aborted
transaction are invisible to that read, so they are sent again: exactly once either way.
A finished run is never replayed again under the same id.
"""
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from flywheel.streams.clients import make_consumer, make_producer
from flywheel.streams.replay import headers
from flywheel.streams.replay.checkpoint import FINISHED, Checkpoints, Progress, Run, totals
from flywheel.streams.replay.errors import ReplayError, ReplayStalled
from flywheel.streams.replay.ranges import PartitionRange, TimeRange, high_watermark, log_ends, resolve, scan
from flywheel.streams.replay.ratelimit import RateLimiter
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import topic_partitions


def timed_run(work: Callable[[], "ReplayReport"]) -> "ReplayReport":
    """Run a replay (or its dry run) and record how long it took on its report."""
    began = time.monotonic()
    report = work()
    report.elapsed_s = time.monotonic() - began
    return report


@dataclass(frozen=True)
class Output:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: headers.Headers
    timestamp: int | None = None
    partition: int | None = None  # None: the partitioner chooses by key


@dataclass(frozen=True)
class Decision:
    outcome: str                      # counted per source partition, e.g. "sent", "redriven"
    outputs: tuple[Output, ...] = ()
    handled: bool = False             # remember in the handled ledger (dead letters)


class Transform(Protocol):
    kind: str
    marker: str  # header that carries the run id on every output

    def decide(self, message: Message) -> Decision: ...


@dataclass
class ReplayOptions:
    batch_size: int = 1000
    rate: float | None = None          # records per second written; None: as fast as it goes
    limit: int | None = None           # stop (resumable) after this many source records acted on
    dry_run: bool = False
    stall_timeout: float = 30.0
    transaction_timeout_ms: int = 60000


@dataclass
class ReplayReport:
    run_id: str
    kind: str
    source: str
    status: str                       # finished | paused | dry-run
    ranges: list[PartitionRange]
    counts: dict[int, dict[str, int]]  # per partition: outcome -> records, over the whole run
    recovered: int = 0                # delivered by an interrupted attempt, not sent again
    elapsed_s: float = 0.0

    def totals(self) -> dict[str, int]:
        return totals(self.counts)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "kind": self.kind, "source": self.source, "status": self.status,
                "recovered": self.recovered, "elapsed_s": round(self.elapsed_s, 3), "totals": self.totals(),
                "partitions": [{"partition": r.partition, "begin": r.begin, "stop": r.stop,
                                **self.counts.get(r.partition, {})} for r in self.ranges]}


ProgressCallback = Callable[[int, int], None]  # (offsets done, offsets in all)


class Replay:
    """One run: `run()` starts it, or resumes it if the run id exists with the same spec."""

    def __init__(self, settings: KafkaSettings, checkpoints: Checkpoints, run_id: str, source: str,
                 window: TimeRange, transform: Transform, spec: dict, options: ReplayOptions | None = None,
                 on_progress: ProgressCallback | None = None):
        self.settings, self.checkpoints, self.run_id = settings, checkpoints, run_id
        self.source, self.window, self.transform = source, window, transform
        self.spec = {"source": source, "start": window.start, "end": window.end, **spec}
        self.options = options or ReplayOptions()
        self._on_progress = on_progress or (lambda done, total: None)
        self._consumer = make_consumer(settings, f"flywheel-replay-{run_id}")

    def run(self) -> ReplayReport:
        try:
            return timed_run(self._dry_run if self.options.dry_run else self._replay)
        finally:
            self._consumer.close()

    # ---- dry run: the same reading and deciding, nothing written, nothing checkpointed
    def _dry_run(self) -> ReplayReport:
        run = self.checkpoints.load(self.run_id)
        if run is not None:
            self.checkpoints.start(self.run_id, self.transform.kind, self.spec, [])  # same spec or RunMismatch
            ranges, starts = run.ranges, dict(run.next_offsets)
        else:
            ranges = resolve(self._consumer, self.source, self.window)
            starts = {r.partition: r.begin for r in ranges}
        counts: dict[int, dict[str, int]] = {}
        total, done = sum(max(0, r.stop - starts[r.partition]) for r in ranges), 0
        for batch in self._scan(ranges, starts):
            for m in batch.messages:
                if m.timestamp()[1] in self.window:
                    _bump(counts, m.partition(), self.transform.decide(m).outcome)
            done = sum(batch.reached[p] - starts[p] for p in batch.reached)
            self._on_progress(done, total)
        return ReplayReport(self.run_id, self.transform.kind, self.source, "dry-run", ranges, counts)

    # ---- the real thing
    def _replay(self) -> ReplayReport:
        run = self._open_run()
        if run.status == FINISHED:
            return self._report(run, "finished", 0)
        writer, recovered = open_writer(self.settings, self.checkpoints, self.run_id, self._consumer,
                                        self.transform.marker, self.options)
        starts = dict(run.next_offsets)
        total = sum(max(0, r.stop - starts[r.partition]) for r in run.ranges)
        acted, paused = 0, False
        for batch in self._scan(run.ranges, starts):
            next_offsets = {}
            for m in batch.messages:
                if self.options.limit is not None and acted >= self.options.limit:
                    paused = True
                    break
                next_offsets[m.partition()] = m.offset() + 1
                if m.timestamp()[1] not in self.window:
                    continue
                decision = self.transform.decide(m)
                already = headers.origin(m.topic(), m.partition(), m.offset()) in recovered
                writer.add(m.partition(), decision, not already, (m.topic(), m.partition(), m.offset()))
                acted += 1 if decision.outputs else 0
            if not paused:
                next_offsets = batch.reached
            writer.commit(next_offsets)
            self._on_progress(sum(max(0, o - starts[p]) for p, o in writer.positions.items()), total)
            if paused:
                break
        if not paused:
            self.checkpoints.finish(self.run_id)
        run = self.checkpoints.load(self.run_id)
        return self._report(run, "paused" if paused else "finished", len(recovered))

    def _scan(self, ranges: list[PartitionRange], starts: dict[int, int]):
        size = self.options.batch_size
        if self.options.rate:  # keep each transaction about a second long under the rate limit
            size = max(1, min(size, int(self.options.rate)))
        return scan(self._consumer, self.source, starts, {r.partition: r.stop for r in ranges},
                    batch_size=size, stall_timeout=self.options.stall_timeout)

    def _open_run(self) -> Run:
        run = self.checkpoints.load(self.run_id)
        if run is None:
            return self.checkpoints.start(self.run_id, self.transform.kind, self.spec,
                                          resolve(self._consumer, self.source, self.window))
        return self.checkpoints.start(self.run_id, self.transform.kind, self.spec, [])

    def _report(self, run: Run, status: str, recovered: int) -> ReplayReport:
        return ReplayReport(self.run_id, run.kind, self.source, status, run.ranges, run.counts, recovered)


def open_writer(settings: KafkaSettings, checkpoints: Checkpoints, run_id: str, consumer, marker: str,
                options: ReplayOptions) -> tuple["_BatchWriter", set[str]]:
    """Fence earlier attempts of the run, then find what they delivered after the checkpoint."""
    producer = make_producer(settings, transactional_id=f"flywheel-replay-{run_id}",
                             **{"transaction.timeout.ms": options.transaction_timeout_ms})
    try:
        producer.init_transactions(30)
    except KafkaException as e:
        raise ReplayStalled(f"cannot start the transactional producer of run {run_id}: {e}") from e
    recovered = recover_origins(consumer, checkpoints, run_id, marker, options.stall_timeout)
    return _BatchWriter(producer, checkpoints, run_id, consumer, RateLimiter(options.rate)), recovered


def recover_origins(consumer, checkpoints: Checkpoints, run_id: str, marker: str, stall_timeout: float) -> set[str]:
    """Origins of the records an interrupted attempt of this run made visible after its last
    checkpoint (see the module docstring)."""
    by_topic: dict[str, dict[int, int]] = {}
    for (topic, p), offset in checkpoints.targets(run_id).items():
        by_topic.setdefault(topic, {})[p] = offset
    mine = run_id.encode()
    found: set[str] = set()
    for topic, starts in by_topic.items():
        ends = log_ends(consumer, topic, list(starts))
        for batch in scan(consumer, topic, starts, ends, stall_timeout=stall_timeout):
            for m in batch.messages:
                if headers.get(m.headers(), marker) == mine:
                    found.add(headers.get(m.headers(), headers.ORIGIN).decode())
    return found


class _BatchWriter:
    """Produces one batch's outputs in one transaction, then saves the checkpoint."""

    def __init__(self, producer: Producer, checkpoints: Checkpoints, run_id: str, consumer, limiter: RateLimiter):
        self._producer, self._checkpoints, self._run_id = producer, checkpoints, run_id
        self._consumer, self._limiter = consumer, limiter
        self._known_targets = {t for t, _ in checkpoints.targets(run_id)}
        self.positions: dict[int, int] = {}
        self._reset()

    def _reset(self) -> None:
        self._in_tx = False
        self._counts: dict[tuple[int, str], int] = {}
        self._handled: list[tuple[str, int, int, str]] = []
        self._delivered: dict[tuple[str, int], int] = {}
        self._failures: list[str] = []

    def add(self, partition: int, decision: Decision, send: bool, source: tuple[str, int, int] | None = None) -> None:
        """Count one source record under `partition`, and produce its outputs unless an earlier
        attempt already delivered them. `source` (topic, partition, offset) goes to the handled
        ledger when the decision asks for it."""
        key = (partition, decision.outcome)
        self._counts[key] = self._counts.get(key, 0) + 1
        if decision.handled and source is not None:
            self._handled.append((*source, decision.outcome))
        if not send:
            return
        for out in decision.outputs:
            self._ensure_target(out.topic)
            if not self._in_tx:
                self._producer.begin_transaction()
                self._in_tx = True
            self._limiter.acquire()
            self._produce(out)

    def _produce(self, out: Output) -> None:
        kwargs = {k: v for k, v in (("timestamp", out.timestamp), ("partition", out.partition)) if v is not None}
        while True:
            try:
                self._producer.produce(out.topic, value=out.value, key=out.key, headers=out.headers,
                                       on_delivery=self._on_delivery, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str()}")
        else:
            key = (msg.topic(), msg.partition())
            self._delivered[key] = max(self._delivered.get(key, 0), msg.offset() + 1)

    def _ensure_target(self, topic: str) -> None:
        """Before the first record goes to a topic, checkpoint where its partitions stand."""
        if topic in self._known_targets:
            return
        positions = {(topic, p): high_watermark(self._consumer, topic, p)
                     for p in topic_partitions(self._consumer, topic)}
        self._checkpoints.add_targets(self._run_id, positions)
        self._known_targets.add(topic)

    def commit(self, next_offsets: dict[int, int], cursors: dict[int, str] | None = None) -> None:
        if self._in_tx:
            try:
                self._producer.flush(60)
                if self._failures:
                    raise ReplayStalled(f"{len(self._failures)} record(s) not delivered: {self._failures[0]}")
                self._producer.commit_transaction(60)
            except (KafkaException, ReplayError) as e:
                self._abort()
                raise e if isinstance(e, ReplayError) else ReplayStalled(f"replay batch failed: {e}") from e
        self._checkpoints.save(self._run_id, Progress(next_offsets, self._counts, self._delivered, self._handled,
                                                      cursors or {}))
        for p, o in next_offsets.items():
            self.positions[p] = max(self.positions.get(p, 0), o)
        self._reset()

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction(30)
        except KafkaException:
            pass  # the next attempt's init_transactions aborts it anyway


def _bump(counts: dict[int, dict[str, int]], partition: int, outcome: str) -> None:
    per = counts.setdefault(partition, {})
    per[outcome] = per.get(outcome, 0) + 1
