"""Replay runs and their checkpoints, in one SQLite file in the data dir.

Per run id: what the run replays (its spec, compared on resume), each source partition's offset
range and how far it got, counts of what happened to the records, and per target partition the
offset from which this run's unconfirmed output may lie (see engine.py for how a resume uses it).
Dead-letter re-drives also record which dead letters they handled, so a later run does not
re-drive the same record twice.
"""
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from flywheel.streams.replay.errors import RunMismatch
from flywheel.streams.replay.ranges import PartitionRange

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    run_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    begin_offset INTEGER NOT NULL, stop_offset INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    cursor TEXT,  -- sources that are not Kafka: the last item done, in the source's own terms
    PRIMARY KEY (run_id, topic, partition));
CREATE TABLE IF NOT EXISTS counts (
    run_id TEXT NOT NULL, partition INTEGER NOT NULL, outcome TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (run_id, partition, outcome));
CREATE TABLE IF NOT EXISTS targets (
    run_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, from_offset INTEGER NOT NULL,
    PRIMARY KEY (run_id, topic, partition));
CREATE TABLE IF NOT EXISTS handled (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    run_id TEXT NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (topic, partition, offset));
"""

RUNNING, FINISHED = "running", "finished"


@dataclass
class Run:
    run_id: str
    kind: str
    spec: dict
    status: str
    created_at: int
    updated_at: int
    ranges: list[PartitionRange] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)
    cursors: dict[int, str | None] = field(default_factory=dict)
    counts: dict[int, dict[str, int]] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        return totals(self.counts)

    @property
    def remaining(self) -> int:
        return sum(max(0, r.stop - max(r.begin, self.next_offsets.get(r.partition, r.begin))) for r in self.ranges)


@dataclass
class Progress:
    """What one committed batch changed, saved in one SQLite transaction."""
    next_offsets: dict[int, int]
    counts: dict[tuple[int, str], int]
    targets: dict[tuple[str, int], int]
    handled: list[tuple[str, int, int, str]] = field(default_factory=list)  # topic, partition, offset, outcome
    cursors: dict[int, str] = field(default_factory=dict)


class Checkpoints:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> "Checkpoints":
        return cls(Path(data_dir) / "replay.sqlite")

    def close(self) -> None:
        self._db.close()

    def start(self, run_id: str, kind: str, spec: dict, ranges: list[PartitionRange]) -> Run:
        """Create the run; or, if it exists with the same spec, return it to resume."""
        existing = self.load(run_id)
        if existing is not None:
            if existing.kind != kind or existing.spec != _normal(spec):
                raise RunMismatch(f"run {run_id} exists with different parameters "
                                  f"({json.dumps(existing.spec, sort_keys=True)}); pick another --run-id")
            return existing
        now = _now()
        with self._tx():
            self._db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?)",
                             (run_id, kind, json.dumps(spec, sort_keys=True), RUNNING, now, now))
            self._db.executemany("INSERT INTO partitions VALUES (?,?,?,?,?,?,NULL)",
                                 [(run_id, r.topic, r.partition, r.begin, r.stop, r.begin) for r in ranges])
        return self.load(run_id)

    def load(self, run_id: str) -> Run | None:
        row = self._db.execute("SELECT run_id, kind, spec, status, created_at, updated_at FROM runs "
                               "WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            return None
        run = Run(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])
        for topic, p, begin, stop, nxt, cursor in self._db.execute(
                "SELECT topic, partition, begin_offset, stop_offset, next_offset, cursor FROM partitions "
                "WHERE run_id=? ORDER BY partition", (run_id,)):
            run.ranges.append(PartitionRange(topic, p, begin, stop))
            run.next_offsets[p] = nxt
            run.cursors[p] = cursor
        for p, outcome, n in self._db.execute("SELECT partition, outcome, n FROM counts WHERE run_id=?", (run_id,)):
            run.counts.setdefault(p, {})[outcome] = n
        return run

    def runs(self) -> list[Run]:
        ids = [r[0] for r in self._db.execute("SELECT run_id FROM runs ORDER BY created_at, run_id")]
        return [self.load(i) for i in ids]

    def targets(self, run_id: str) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in self._db.execute(
            "SELECT topic, partition, from_offset FROM targets WHERE run_id=?", (run_id,))}

    def add_targets(self, run_id: str, positions: dict[tuple[str, int], int]) -> None:
        """Remember where a target partition stood before this run first wrote to it. Must be saved
        before the first record goes there, so a crash right after the write is still covered."""
        with self._tx():
            self._db.executemany("INSERT OR IGNORE INTO targets VALUES (?,?,?,?)",
                                 [(run_id, t, p, o) for (t, p), o in positions.items()])

    def save(self, run_id: str, progress: Progress) -> None:
        with self._tx():
            self._db.executemany("UPDATE partitions SET next_offset=MAX(next_offset, ?) "
                                 "WHERE run_id=? AND partition=?",
                                 [(o, run_id, p) for p, o in progress.next_offsets.items()])
            self._db.executemany("UPDATE partitions SET cursor=? WHERE run_id=? AND partition=?",
                                 [(c, run_id, p) for p, c in progress.cursors.items()])
            self._db.executemany(
                "INSERT INTO counts VALUES (?,?,?,?) ON CONFLICT(run_id, partition, outcome) "
                "DO UPDATE SET n = n + excluded.n",
                [(run_id, p, outcome, n) for (p, outcome), n in progress.counts.items()])
            self._db.executemany("UPDATE targets SET from_offset=MAX(from_offset, ?) "
                                 "WHERE run_id=? AND topic=? AND partition=?",
                                 [(o, run_id, t, p) for (t, p), o in progress.targets.items()])
            self._db.executemany("INSERT OR REPLACE INTO handled VALUES (?,?,?,?,?)",
                                 [(t, p, o, run_id, outcome) for t, p, o, outcome in progress.handled])
            self._db.execute("UPDATE runs SET updated_at=? WHERE run_id=?", (_now(), run_id))

    def finish(self, run_id: str) -> None:
        with self._tx():
            self._db.execute("UPDATE runs SET status=?, updated_at=? WHERE run_id=?", (FINISHED, _now(), run_id))

    def handled_by(self, topic: str, partition: int, offset: int) -> str | None:
        """The run that already handled this record (dead-letter re-drives), if any."""
        row = self._db.execute("SELECT run_id FROM handled WHERE topic=? AND partition=? AND offset=?",
                               (topic, partition, offset)).fetchone()
        return row[0] if row else None

    def _tx(self):
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, *_):
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _normal(spec: dict) -> dict:
    return json.loads(json.dumps(spec, sort_keys=True))


def _now() -> int:
    return int(time.time() * 1000)


def totals(counts: dict[int, dict[str, int]]) -> dict[str, int]:
    """Outcome counts summed over partitions."""
    out: dict[str, int] = {}
    for per in counts.values():
        for outcome, n in per.items():
            out[outcome] = out.get(outcome, 0) + n
    return out
