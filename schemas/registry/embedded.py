"""The embedded registry: a SQLite file in the stack's data dir.

Ids are rows in that file, so they survive restarts and every process of the stack that
opens the same data dir sees the same ids. Registration runs in one IMMEDIATE transaction,
so two processes registering at once cannot hand out the same id twice.
"""
import functools
import hashlib
import sqlite3
from pathlib import Path

from flywheel.schemas import compatibility
from flywheel.schemas.errors import RegistryUnavailable, UnknownSchemaId

_DDL = """
CREATE TABLE IF NOT EXISTS schemas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL UNIQUE,
    schema TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subject_versions (
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES schemas(id),
    PRIMARY KEY (subject, version)
);
CREATE TABLE IF NOT EXISTS subject_config (
    subject TEXT PRIMARY KEY,
    mode TEXT NOT NULL
);
"""


GLOBAL = ""  # the subject_config row of the registry-wide mode (no real subject is empty)


def _answers(method):
    """SQLite's errors, where they enter: the file gone, unreadable or locked past the timeout is
    the registry being unavailable (backpressure), never a bad record."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise RegistryUnavailable(f"schema registry {self._path}: {e}") from e
    return call


class EmbeddedRegistry:
    @_answers
    def __init__(self, path: Path, default_mode: str = "BACKWARD"):
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_DDL)
        self._default_mode = default_mode
        self._by_id: dict[int, str] = {}

    @_answers
    def register(self, subject: str, schema_text: str) -> int:
        fingerprint = hashlib.sha256(schema_text.encode()).hexdigest()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            found = self._db.execute(
                "SELECT s.id FROM subject_versions v JOIN schemas s ON s.id = v.schema_id "
                "WHERE v.subject = ? AND s.fingerprint = ?", (subject, fingerprint)).fetchone()
            if found:
                self._db.execute("COMMIT")
                return found[0]
            compatibility.check(subject, schema_text, self.versions(subject), self.compatibility(subject))
            self._db.execute("INSERT OR IGNORE INTO schemas (fingerprint, schema) VALUES (?, ?)",
                             (fingerprint, schema_text))
            schema_id = self._db.execute("SELECT id FROM schemas WHERE fingerprint = ?",
                                         (fingerprint,)).fetchone()[0]
            self._db.execute(
                "INSERT INTO subject_versions (subject, version, schema_id) VALUES "
                "(?, (SELECT COALESCE(MAX(version), 0) + 1 FROM subject_versions WHERE subject = ?), ?)",
                (subject, subject, schema_id))
            self._db.execute("COMMIT")
            return schema_id
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @_answers
    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self._by_id:
            row = self._db.execute("SELECT schema FROM schemas WHERE id = ?", (schema_id,)).fetchone()
            if row is None:
                raise UnknownSchemaId(schema_id)
            self._by_id[schema_id] = row[0]
        return self._by_id[schema_id]

    @_answers
    def versions(self, subject: str) -> list[str]:
        rows = self._db.execute(
            "SELECT s.schema FROM subject_versions v JOIN schemas s ON s.id = v.schema_id "
            "WHERE v.subject = ? ORDER BY v.version", (subject,)).fetchall()
        return [r[0] for r in rows]

    @_answers
    def subjects(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT subject FROM subject_versions ORDER BY subject")]

    @_answers
    def registered(self, subject: str) -> list[tuple[int, int, str]]:
        """(version, schema id, schema text) of every version of a subject, oldest first."""
        return self._db.execute(
            "SELECT v.version, s.id, s.schema FROM subject_versions v JOIN schemas s ON s.id = v.schema_id "
            "WHERE v.subject = ? ORDER BY v.version", (subject,)).fetchall()

    @_answers
    def set_compatibility(self, subject: str, mode: str) -> None:
        if mode not in compatibility.MODES:
            raise ValueError(f"unknown compatibility mode {mode!r}; one of {', '.join(compatibility.MODES)}")
        self._db.execute("INSERT OR REPLACE INTO subject_config (subject, mode) VALUES (?, ?)", (subject, mode))

    @_answers
    def compatibility(self, subject: str) -> str:
        """The subject's own mode, else the global one (set under the subject GLOBAL), else the default."""
        row = self._db.execute("SELECT mode FROM subject_config WHERE subject IN (?, ?) "
                               "ORDER BY subject = ? DESC LIMIT 1", (subject, GLOBAL, subject)).fetchone()
        return row[0] if row else self._default_mode

    @_answers
    def has_own_compatibility(self, subject: str) -> bool:
        return self._db.execute("SELECT 1 FROM subject_config WHERE subject = ?", (subject,)).fetchone() is not None

    def close(self) -> None:
        self._db.close()
