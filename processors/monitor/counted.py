"""Offsets already counted: what keeps a record from being counted twice across a restart.

The monitor commits no further than the first record an open window holds (at-least-once). A
window that closes while a window that started earlier in the same partition stays open has
records past that commit: they are in a written partial, yet whoever reads the partition next
(a restart, a rebalance) reads them again. So, per partition:

1. each window keeps its records' offsets as runs (`Runs`), cheap because a window's records in
   one partition are mostly consecutive;
2. when windows close, their runs join the partition's counted runs; with the partials the
   monitor writes, in the same store call, each partition's counted runs from its last
   committed offset on (`CountedOffsets`; below it nothing is read again);
3. a process that starts reading a partition loads its counted runs first and skips exactly
   those offsets, keeping them as counted, so a second restart skips them too.
"""
from dataclasses import dataclass, field

import numpy as np
from flywheel.feature_store import CountedOffsets

Partition = tuple[str, int]          # (topic, partition)


@dataclass(frozen=True)
class Runs:
    """Offsets of one partition as sorted, disjoint, non-adjacent [start, end) runs."""
    starts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ends: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @staticmethod
    def of(offsets: np.ndarray) -> "Runs":
        offsets = np.unique(np.asarray(offsets, dtype=np.int64))
        if not len(offsets):
            return Runs()
        breaks = np.flatnonzero(np.diff(offsets) != 1) + 1
        return Runs(offsets[np.r_[0, breaks]], offsets[np.r_[breaks - 1, len(offsets) - 1]] + 1)

    def union(self, other: "Runs") -> "Runs":
        if not len(other.starts):
            return self
        if not len(self.starts):
            return other
        starts, ends = np.concatenate([self.starts, other.starts]), np.concatenate([self.ends, other.ends])
        order = np.argsort(starts, kind="stable")
        starts, ends = starts[order], ends[order]
        reach = np.maximum.accumulate(ends)
        first = np.r_[True, starts[1:] > reach[:-1]]        # a run that neither overlaps nor touches the last
        index = np.flatnonzero(first)
        return Runs(starts[index], np.maximum.reduceat(ends, index))

    def since(self, offset: int) -> "Runs":
        """The offsets at or past `offset`."""
        keep = self.ends > offset
        return Runs(np.maximum(self.starts[keep], offset), self.ends[keep])

    def contains(self, offsets: np.ndarray) -> np.ndarray:
        """Per offset: whether it is one of these."""
        if not len(self.starts):
            return np.zeros(len(offsets), dtype=bool)
        at = np.searchsorted(self.starts, offsets, side="right") - 1
        return (at >= 0) & (offsets < self.ends[np.maximum(at, 0)])

    @property
    def first(self) -> int | None:
        return int(self.starts[0]) if len(self.starts) else None

    def __len__(self) -> int:
        return int((self.ends - self.starts).sum())

    def to_bytes(self) -> bytes:
        return np.column_stack([self.starts, self.ends]).astype("<i8").tobytes()

    @staticmethod
    def from_bytes(data: bytes) -> "Runs":
        pairs = np.frombuffer(data, dtype="<i8").reshape(-1, 2).astype(np.int64)
        return Runs(pairs[:, 0].copy(), pairs[:, 1].copy())


def runs_by_partition(partitions: list[Partition], codes: np.ndarray, offsets: np.ndarray) -> dict[Partition, Runs]:
    """Records' offsets (each with its partition's index into `partitions`) as runs per partition."""
    return {tp: Runs.of(offsets[codes == i]) for i, tp in enumerate(partitions) if (codes == i).any()}


def add_runs(into: dict[Partition, Runs], more: dict[Partition, Runs]) -> None:
    for tp, runs in more.items():
        into[tp] = into[tp].union(runs) if tp in into else runs


class Counted:
    """Per partition, the offsets counted in written partials that the commit has not passed."""

    def __init__(self, group_id: str):
        self.group_id = group_id
        self._runs: dict[Partition, Runs] = {}
        self._committed: dict[Partition, int] = {}
        self._loaded: set[Partition] = set()

    def unloaded(self, partitions: set[Partition]) -> list[Partition]:
        """Partitions read now whose counted runs were not loaded since they were assigned."""
        return sorted(partitions - self._loaded)

    def load(self, rows: list[CountedOffsets], partitions: list[Partition], name) -> None:
        """Counted runs of `partitions` as the store holds them (`name`: partition -> row key)."""
        stored = {r.topic_partition: Runs.from_bytes(r.runs) for r in rows}
        for tp in partitions:
            if (runs := stored.get(name(*tp))) is not None and len(runs):
                add_runs(self._runs, {tp: runs})
            self._loaded.add(tp)

    def skip(self, partitions: list[Partition], codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Per record: whether its offset is counted already (read again after a restart)."""
        skip = np.zeros(len(offsets), dtype=bool)
        for i, tp in enumerate(partitions):
            if (runs := self._runs.get(tp)) is not None:
                mine = codes == i
                skip[mine] = runs.contains(offsets[mine])
        return skip

    def add(self, closed: dict[Partition, Runs]) -> list[Partition]:
        """Closed windows' offsets; returns the partitions whose stored runs change."""
        add_runs(self._runs, closed)
        return sorted(closed)

    def committed(self, offsets: dict[Partition, int]) -> None:
        """Offsets committed: records before them are never read again."""
        self._committed.update(offsets)

    def rows(self, changed: list[Partition], name, now: int) -> list[CountedOffsets]:
        """The stored form of every partition whose runs changed or can be pruned past its commit."""
        out = []
        for tp in sorted(set(changed) | {tp for tp, runs in self._runs.items()
                                           if tp in self._committed and runs.first is not None
                                           and runs.first < self._committed[tp]}):
            runs = self._runs[tp]
            if tp in self._committed:
                runs = self._runs[tp] = runs.since(self._committed[tp])
            out.append(CountedOffsets(self.group_id, name(*tp), runs.to_bytes(), now))
        return out

    def forget(self, partitions: list[Partition]) -> None:
        """Revoked: the next owner loads what was stored."""
        for tp in partitions:
            self._runs.pop(tp, None)
            self._committed.pop(tp, None)
            self._loaded.discard(tp)
