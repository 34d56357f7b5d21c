"""The monitor's event-time watermark: how far its windows may be closed.

Per partition it keeps the highest event time read (`predicted_at` of predictions, `labelled_at`
of feedback). The watermark is the lowest of them over the active partitions, less the allowed
lateness: every record of an active partition that is more than the lateness behind the newest
one read from it is late. It never goes back.

Two kinds of time must not move it, or every window would close at once:
- an event time ahead of the wall clock (a producer's clock years ahead, a hostile writer): the
  clock caps it, so such a record holds nothing back and closes nothing early;
- a replay's old event times: replays never reach the windows (process.py leaves them out).

A partition with no record for `idle_ms` of the wall clock is idle (Flink's `withIdleness`): it
holds nothing back, as if its records were at the clock, so one quiet partition cannot keep
every window open; when every partition is quiet the watermark follows the clock. Before any
record was read, the watermark waits `idle_ms` (a freshly assigned partition's backlog may take a
fetch or two to arrive) and then follows the clock too.
"""
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

Partition = Hashable            # (topic, partition); None for records without a source


@dataclass
class Watermark:
    lateness_ms: int
    idle_ms: int
    highest: dict[Partition, int] = field(default_factory=dict)     # per partition: newest event time read
    seen_at: dict[Partition, int] = field(default_factory=dict)     # per partition: clock when last read
    at: int | None = None              # the watermark (None: nothing may close yet)
    _fresh: set = field(default_factory=set)        # partitions read since the last `advance`
    _started: int | None = None

    def observe(self, times: Iterable[tuple[Partition, int]]) -> None:
        """Event times read, with the partition each came from (already reduced to one per
        partition by the caller, or not: the highest is kept)."""
        for partition, t in times:
            if t > self.highest.get(partition, t - 1):
                self.highest[partition] = t
            self._fresh.add(partition)

    def advance(self, now_ms: int) -> int | None:
        """The watermark at clock `now_ms` (after the records observed so far)."""
        if self._started is None:
            self._started = now_ms
        for partition in self._fresh:
            self.seen_at[partition] = now_ms
        self._fresh.clear()
        active = [t for p, t in self.highest.items() if now_ms - self.seen_at[p] < self.idle_ms]
        if not self.highest and now_ms - self._started < self.idle_ms:
            return self.at
        candidate = min([now_ms, *active]) - self.lateness_ms
        if self.at is None or candidate > self.at:
            self.at = candidate
        return self.at

    def of(self, partition: Partition, now_ms: int) -> int | None:
        """One partition's own watermark (None: nothing read from it yet)."""
        if partition not in self.highest:
            return None
        return min(now_ms, self.highest[partition]) - self.lateness_ms

    def forget(self) -> None:
        """The partitions went elsewhere (a rebalance): what was read of them says nothing of the
        next ones. The watermark itself stays: windows closed here stay closed."""
        self.highest.clear()
        self.seen_at.clear()
        self._fresh.clear()
        self._started = None
