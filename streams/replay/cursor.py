"""Replay from an ordered source that is not Kafka (the feedback store, through processors/):
the same transactional batches, checkpoints, recovery and report as a topic replay, with the
source's position kept as a cursor (the last item done, in the source's own terms) instead of
offsets. The source must list its items in a stable order and resume strictly after a cursor.
"""
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from flywheel.streams.clients import make_consumer
from flywheel.streams.replay.checkpoint import FINISHED, Checkpoints
from flywheel.streams.replay.engine import (
    Decision,
    ProgressCallback,
    ReplayOptions,
    ReplayReport,
    open_writer,
    timed_run,
)
from flywheel.streams.replay.ranges import PartitionRange
from flywheel.streams.settings import KafkaSettings

PARTITION = 0  # such a source is one ordered sequence


@dataclass(frozen=True)
class Item:
    cursor: str       # the source resumes strictly after this
    origin: str       # names the source record in the flywheel-origin header
    record: Any


class ItemSource(Protocol):
    name: str

    def spec(self) -> dict: ...          # what the source reads (compared on resume)

    def count(self) -> int: ...

    def items(self, after: str | None) -> Iterator[Item]: ...


class ItemTransform(Protocol):
    kind: str
    marker: str

    def decide(self, item: Item) -> Decision: ...


class CursorReplay:
    def __init__(self, settings: KafkaSettings, checkpoints: Checkpoints, run_id: str, source: ItemSource,
                 transform: ItemTransform, spec: dict, options: ReplayOptions | None = None,
                 on_progress: ProgressCallback | None = None):
        self.settings, self.checkpoints, self.run_id = settings, checkpoints, run_id
        self.source, self.transform = source, transform
        self.spec = {"source": source.name, **source.spec(), **spec}
        self.options = options or ReplayOptions()
        self._on_progress = on_progress or (lambda done, total: None)

    def run(self) -> ReplayReport:
        return timed_run(self._dry_run if self.options.dry_run else self._replay)

    def _dry_run(self) -> ReplayReport:
        run = self.checkpoints.load(self.run_id)
        if run is not None:
            self.checkpoints.start(self.run_id, self.transform.kind, self.spec, [])  # same spec or RunMismatch
        counts: dict[str, int] = {}
        total = self.source.count()
        for done, item in enumerate(self.source.items(run.cursors.get(PARTITION) if run else None), start=1):
            outcome = self.transform.decide(item).outcome
            counts[outcome] = counts.get(outcome, 0) + 1
            if done % 1000 == 0:
                self._on_progress(done, total)
        return ReplayReport(self.run_id, self.transform.kind, self.source.name, "dry-run",
                            [PartitionRange(self.source.name, PARTITION, 0, total)], {PARTITION: counts})

    def _replay(self) -> ReplayReport:
        run = self.checkpoints.load(self.run_id)
        if run is None:
            total = self.source.count()
            run = self.checkpoints.start(self.run_id, self.transform.kind, self.spec,
                                         [PartitionRange(self.source.name, PARTITION, 0, total)])
        else:
            run = self.checkpoints.start(self.run_id, self.transform.kind, self.spec, [])
        if run.status == FINISHED:
            return self._report("finished", 0)
        consumer = make_consumer(self.settings, f"flywheel-replay-{self.run_id}")
        try:
            writer, recovered = open_writer(self.settings, self.checkpoints, self.run_id, consumer,
                                            self.transform.marker, self.options)
            paused = self._loop(writer, recovered, run.next_offsets[PARTITION], run.cursors.get(PARTITION),
                                run.ranges[0].stop)
        finally:
            consumer.close()
        if not paused:
            self.checkpoints.finish(self.run_id)
        return self._report("paused" if paused else "finished", len(recovered))

    def _loop(self, writer, recovered: set[str], done: int, cursor: str | None, total: int) -> bool:
        """Returns whether the run paused at its limit."""
        acted = in_batch = 0
        batch_size = self.options.batch_size
        if self.options.rate:  # keep each transaction about a second long under the rate limit
            batch_size = max(1, min(batch_size, int(self.options.rate)))
        for item in self.source.items(cursor):
            if self.options.limit is not None and acted >= self.options.limit:
                writer.commit({PARTITION: done}, {PARTITION: cursor} if cursor else None)
                return True
            decision = self.transform.decide(item)
            writer.add(PARTITION, decision, item.origin not in recovered)
            acted += 1 if decision.outputs else 0
            done, cursor, in_batch = done + 1, item.cursor, in_batch + 1
            if in_batch >= batch_size:
                writer.commit({PARTITION: done}, {PARTITION: cursor})
                self._on_progress(done, total)
                in_batch = 0
        writer.commit({PARTITION: done}, {PARTITION: cursor} if cursor else None)
        self._on_progress(done, total)
        return False

    def _report(self, status: str, recovered: int) -> ReplayReport:
        run = self.checkpoints.load(self.run_id)
        return ReplayReport(self.run_id, run.kind, self.source.name, status, run.ranges, run.counts, recovered)
