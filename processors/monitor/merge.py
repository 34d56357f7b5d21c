"""The monitor as N processes in one consumer group: partial windows merged through the store.

Each process keeps tumbling windows (windows.py) for the partitions the group gave it. The
protocol, in steps:

1. A window closes on a process when the process's own watermark passes its end (event time:
   watermark.py; each process's watermark is over the partitions it owns). The process writes
   its partial (rows, late records, window profile, performance counts) to the store keyed by
   (group, window, model, version, instance), before it commits any offset past the window's
   records, as one process did with its window row. In the same store call it writes, per
   partition, the offsets of its closed windows' records that its last commit has not passed
   (counted.py): a window of the partition that started earlier may still be open and hold the
   commit back, or the process may be killed before it commits.
2. Each process then writes its progress: per partition it owns, the time through which every
   window ending at or before it has been written as partials. It vouches for a partition only
   with evidence that it has read the partition that far: no lag (its position is the
   partition's high watermark: as far as its watermark), or the partition's own watermark (the
   newest event time read from it, less the lateness). A freshly assigned partition with a
   backlog is therefore not vouched for until it is read.
   Progress is rewritten every `progress_seconds`, so a process whose partitions had no record
   for a window still vouches for them.
3. One process merges: the one that owns partition 0 of the feedback topic. It learns windows
   from its own partials and by listing the group's recent partials in the store. A window is
   complete when the latest progress per partition reaches the window's end for every
   partition the group reads (the feedback topic and every predictions topic: a record names
   its model itself, so any predictions partition may hold any version's rows). Complete, it
   merges the partials (sketches merge, counts add up), scores the result as one process
   would, writes the window's row, then `closed_until` of the version with what its windows
   carry into the next (too small to judge: a merger that takes over, or restarts, reads it
   back), and shows the gauges.
   Still incomplete `merge_wait` after it first saw the window, it merges what there is and
   records the partitions it lacks in the window's detail (`missing`): late, never stuck.
   A window at or before the version's stored `closed_until` is never merged again.
4. A rebalance revokes partitions: the process drops every open window. The group resumes the
   partitions from the committed offsets, which no open window's records are past, so their
   new owners read those records again: none is lost, and a dropped window was never written.
   Records of windows already written lie past the commit too: the new owner loads the
   partition's counted offsets and skips exactly those. A partition taken over from a process
   that stopped is read behind the clock: its records open their windows again on the new owner, which writes them
   as further partials (each close is a partial of its own) unless the store says the window
   was merged meanwhile; only then are they late, folded into the version's first unmerged
   window. Its progress vouches for the partition only once it has read that far, so the
   merger waits for those partials. One process is the same protocol with N = 1: it owns every
   partition and merges its own partials as soon as its progress is written.
"""
from collections.abc import Iterable
from dataclasses import dataclass

from flywheel.feature_store import MonitorProgress, WindowPartial
from flywheel.processors.monitor.performance import PerformanceCounts
from flywheel.processors.monitor.profile import Profile
from flywheel.processors.monitor.windows import Partial

WindowKey = tuple[str, str, int]      # (model, version, window start)


def partition_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def to_row(partial: Partial, group_id: str, instance: str, now_ms: int) -> WindowPartial:
    return WindowPartial(group_id, partial.model, partial.version, partial.start_ms, partial.end_ms, instance,
                         partial.rows, partial.late, partial.profile.to_bytes() if partial.profile else None,
                         partial.counts.to_dict(), now_ms)


def from_row(row: WindowPartial) -> Partial:
    return Partial(row.model, row.model_version, row.window_start, row.window_end, row.row_count, row.late,
                   Profile.from_bytes(row.profile) if row.profile is not None else None,
                   PerformanceCounts.from_dict(row.performance))


@dataclass
class Coverage:
    """Per partition, the furthest any process's progress reaches."""
    through: dict[str, int]

    @staticmethod
    def of(progress: Iterable[MonitorProgress]) -> "Coverage":
        through: dict[str, int] = {}
        for p in progress:
            for name, t in p.through.items():
                through[name] = max(t, through.get(name, t))
        return Coverage(through)

    def missing(self, partitions: Iterable[str], end_ms: int) -> list[str]:
        """The partitions whose partials of a window ending at `end_ms` may not all be written."""
        return sorted(p for p in partitions if self.through.get(p, end_ms - 1) < end_ms)


@dataclass
class Pending:
    end_ms: int
    deadline_ms: int          # merged with what there is from then on


class Merger:
    """The windows waiting to be merged, and which of them are due. A version's windows are
    merged in order (its scorer carries small windows into the next one)."""

    def __init__(self, wait_ms: int):
        self.wait_ms = wait_ms
        self.pending: dict[WindowKey, Pending] = {}
        self.merged: dict[WindowKey, int] = {}      # -> window end, until older than any listing

    def note(self, windows: Iterable[tuple[WindowKey, int]], now_ms: int) -> None:
        """Windows (key, end) some process has written a partial of."""
        for key, end in windows:
            if key not in self.pending and key not in self.merged:
                self.pending[key] = Pending(end, now_ms + self.wait_ms)

    def due(self, coverage: Coverage, partitions: list[str], now_ms: int) -> dict[WindowKey, list[str]]:
        """Windows to merge now, each with the partitions it lacks (none when complete)."""
        out: dict[WindowKey, list[str]] = {}
        waiting: set[tuple[str, str]] = set()
        for key in sorted(self.pending):
            pending = self.pending[key]
            missing = coverage.missing(partitions, pending.end_ms)
            if key[:2] in waiting or (missing and now_ms < pending.deadline_ms):
                waiting.add(key[:2])
                continue
            out[key] = missing
        return out

    def done(self, keys: Iterable[WindowKey]) -> None:
        for key in keys:
            self.merged[key] = self.pending.pop(key).end_ms

    def forget_merged_before(self, start_ms: int) -> None:
        """Merged windows older than any listing to come cannot be noted again: let them go."""
        self.merged = {k: end for k, end in self.merged.items() if k[2] >= start_ms}
