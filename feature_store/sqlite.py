"""The embedded backend: SQLite in WAL mode in the data dir. Its tables are derived from the CQL
definitions (same names, same columns, PRIMARY KEY = partition key + clustering columns), plus
an `expires_at` column standing in for Cassandra's TTL: reads skip expired rows and a periodic
purge deletes them.

Several processes may open the same file: WAL lets readers run beside the one writer, every
batch of writes is one short IMMEDIATE transaction (an executemany per table), and a busy
database is waited for (busy_timeout) before StoreUnavailable is raised. Threads of one
process share the connection under a lock.
"""
import functools
import operator
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flywheel.feature_store.base import CLEARED, Clock, FeatureStore, Row, Write
from flywheel.feature_store.errors import StoreError, StoreNotMigrated, StoreUnavailable
from flywheel.feature_store.schema import (
    JSON_COLUMNS,
    Migration,
    Table,
    from_json,
    parse_table,
    pending,
    tables,
    to_json,
)
from flywheel.feature_store.settings import StoreSettings

PAGE = 1000          # rows per range-read query (keeps read snapshots short)
MAX_KEYS = 500       # keys per IN (...) query
PURGE_EVERY_MS = 60_000
_TYPES = {"text": "TEXT", "bigint": "INTEGER", "int": "INTEGER", "boolean": "INTEGER",
          "double": "REAL", "blob": "BLOB"}


def open_backend(settings: StoreSettings, data_dir: Path, clock: Clock) -> "SqliteStore":
    path = Path(settings.sqlite.path)
    return SqliteStore(path if path.is_absolute() else data_dir / path, settings, clock)


class SqliteStore(FeatureStore):
    backend = "sqlite"

    def __init__(self, path: Path, settings: StoreSettings, clock: Clock):
        super().__init__(settings, clock)
        self.path = path
        self._lock = threading.RLock()
        self._last_purge = clock()
        with self._errors():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=settings.sqlite.busy_timeout_ms / 1000,
                                       isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {int(settings.sqlite.busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")   # WAL + NORMAL: durable across process crashes
        self.migrate()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path})"

    # ---- lifecycle
    def migrate(self) -> list[str]:
        with self._write_transaction() as db:
            db.execute(_create_table(tables()["schema_migrations"]))
            applied = dict(db.execute("SELECT name, checksum FROM schema_migrations").fetchall())
            todo = pending(applied)
            for migration in todo:
                for statement in _ddl(migration):
                    db.execute(statement)
                db.execute("INSERT OR REPLACE INTO schema_migrations (name, checksum, applied_at) VALUES (?, ?, ?)",
                           (migration.name, migration.checksum, self.clock()))
        return [m.name for m in todo]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def purge_expired(self) -> int:
        """Delete every expired row; returns how many."""
        now = self.clock()
        with self._write_transaction() as db:
            deleted = sum(db.execute(f"DELETE FROM {t} WHERE expires_at <= ?", (now,)).rowcount
                          for t in tables())
        self._last_purge = now
        return deleted

    def counts(self) -> dict[str, int]:
        """Unexpired rows per table."""
        now = self.clock()
        with self._read() as db:
            return {t: db.execute(f"SELECT count(*) FROM {t} WHERE {_LIVE}", (now,)).fetchone()[0]
                    for t in tables()}

    # ---- primitives
    def _write(self, writes: Sequence[Write]) -> None:
        """One IMMEDIATE transaction for the whole batch, one executemany per table and kind."""
        now = self.clock()
        statements = []
        for w in writes:
            t = tables()[w.table]
            if w.rows:
                names = list(t.columns)
                expires = now + int(w.ttl_s * 1000) if w.ttl_s else None
                statements.append((f"INSERT OR REPLACE INTO {w.table} ({', '.join(names)}, expires_at) "
                                   f"VALUES ({', '.join('?' * (len(names) + 1))})",
                                   [[*_encode(w.table, row), expires] for row in w.rows]))
            if w.deletes:
                statements.append((f"DELETE FROM {w.table} WHERE {' AND '.join(f'{c} = ?' for c in t.primary_key)}",
                                   w.deletes))
        with self._write_transaction() as db:
            for sql, values in statements:
                db.executemany(sql, values)
        if now - self._last_purge >= PURGE_EVERY_MS:
            self.purge_expired()

    def _select(self, table: str, keys: Sequence[tuple]) -> list[Row]:
        """Keys sharing all but their last column are read with one `... AND last IN (...)`
        query (per 500 keys), which walks the primary key index."""
        t = tables()[table]
        groups: dict[tuple, list] = {}
        for key in keys:
            groups.setdefault(tuple(key[:-1]), []).append(key[-1])
        out: list[Row] = []
        for prefix, lasts in groups.items():
            fixed = "".join(f"{c} = ? AND " for c in t.primary_key[:len(prefix)])
            last = t.primary_key[len(prefix)]
            for i in range(0, len(lasts), MAX_KEYS):
                chunk = lasts[i:i + MAX_KEYS]
                sql = (f"SELECT {', '.join(t.columns)} FROM {table} WHERE {fixed}{last} IN "
                       f"({', '.join('?' * len(chunk))}) AND {_LIVE} ORDER BY {', '.join(t.primary_key)}")
                with self._read() as db:
                    rows = db.execute(sql, [*prefix, *chunk, self.clock()]).fetchall()
                out.extend(_decode(table, row) for row in rows)
        return out

    def _bucket_bounds(self, table: str, prefix: tuple) -> tuple[int, int] | None:
        t = tables()[table]
        where = " AND ".join(f"{c} = ?" for c in t.partition_key[:len(prefix)])
        with self._read() as db:
            low, high = db.execute(f"SELECT MIN(bucket), MAX(bucket) FROM {table} WHERE {where}", prefix).fetchone()
        return None if low is None else (low, high)

    def _select_range(self, table: str, partition: tuple, start: int, end: int) -> Iterator[Row]:
        t = tables()[table]
        where = " AND ".join(f"{c} = ?" for c in t.partition_key)
        first, order = t.clustering[0], ", ".join(t.clustering)
        base = (f"SELECT {', '.join(t.columns)} FROM {table} WHERE {where} AND {first} >= ? "
                f"AND {first} < ? AND {_LIVE}")
        after: tuple | None = None
        while True:
            sql, params = base, [*partition, start, end, self.clock()]
            if after is not None:
                sql += f" AND ({order}) > ({', '.join('?' * len(after))})"
                params += list(after)
            with self._read() as db:
                page = db.execute(f"{sql} ORDER BY {order} LIMIT {PAGE}", params).fetchall()
            rows = [_decode(table, row) for row in page]
            yield from rows
            if len(rows) < PAGE:
                return
            after = tuple(rows[-1][c] for c in t.clustering)

    # ---- transactions and errors
    @contextmanager
    def _write_transaction(self):
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self):
        with self._lock, self._errors():
            yield self._db

    @contextmanager
    def _errors(self):
        try:
            yield
        except sqlite3.OperationalError as e:
            text = str(e)
            if "no such table" in text:
                raise StoreNotMigrated(f"{self.path}: {text}; run `flywheel store migrate`") from e
            if any(s in text for s in ("locked", "busy", "disk I/O", "unable to open", "full")):
                raise StoreUnavailable(f"{self.path}: {text}") from e
            raise StoreError(f"{self.path}: {text}") from e
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e


_LIVE = "(expires_at IS NULL OR expires_at > ?)"


def _ddl(migration: Migration) -> list[str]:
    """SQLite statements for a migration file: its CREATE TABLEs translated (from the file's own
    definition: a later file may drop the table), DROP TABLEs as they are; ALTER TABLE ... WITH
    only sets Cassandra table options (compaction), which SQLite has no use for."""
    out = []
    for statement in migration.statements:
        if statement.startswith("CREATE TABLE"):
            table = parse_table(statement)
            out += [_create_table(table), f"CREATE INDEX IF NOT EXISTS {table.name}_expiry ON {table.name} "
                                          f"(expires_at) WHERE expires_at IS NOT NULL"]
        elif statement.startswith("DROP TABLE IF EXISTS"):
            out.append(statement)
        elif not re.fullmatch(r"ALTER TABLE \w+ WITH .*", statement):
            raise StoreError(f"{migration.name}: the embedded backend translates CREATE TABLE, DROP TABLE and "
                             f"ALTER TABLE ... WITH statements, not {statement[:40]!r}")
    return out


def _create_table(t: Table) -> str:
    columns = ", ".join(f"{c} {_TYPES.get(kind, 'TEXT')}" for c, kind in t.columns.items())
    return (f"CREATE TABLE IF NOT EXISTS {t.name} ({columns}, expires_at INTEGER, "
            f"PRIMARY KEY ({', '.join(t.primary_key)})) WITHOUT ROWID")


def _is_json(column: str, kind: str) -> bool:
    return column in JSON_COLUMNS or kind.startswith("frozen<")


@functools.cache
def _codec(table: str) -> tuple[tuple[str, ...], Callable, tuple, tuple]:
    """A table's column names, a getter of a row's values in that order, and the (position,
    function) of each column whose value is encoded for SQLite and of each decoded on the way
    back, worked out once rather than per value."""
    t = tables()[table]
    kinds = list(t.columns.items())
    encode = tuple((i, _json if _is_json(c, k) else int) for i, (c, k) in enumerate(kinds)
                   if _is_json(c, k) or k == "boolean")
    decode = tuple((c, from_json if _is_json(c, k) else bool) for c, k in kinds if _is_json(c, k) or k == "boolean")
    return tuple(t.columns), operator.itemgetter(*t.columns), encode, decode


def _json(value: Any) -> str:
    if value == {} or value == []:   # empty flags and maps, a third of what a joiner writes: no encoder
        return "[]" if isinstance(value, list) else "{}"
    return to_json(value)


def _encode(table: str, row: Row) -> list:
    _, values_of, encode, _ = _codec(table)
    values = list(values_of(row))
    for i, f in encode:
        if values[i] is not None and values[i] is not CLEARED:
            values[i] = f(values[i])
    if CLEARED in values:
        return [None if v is CLEARED else v for v in values]
    return values


def _decode(table: str, row: tuple) -> Row:
    names, _, _, decode = _codec(table)
    out = dict(zip(names, row))
    for c, f in decode:
        if out[c] is not None:
            out[c] = f(out[c])
    return out
