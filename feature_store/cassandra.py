"""The Cassandra backend (Apache Cassandra 4.0+), on cassandra-driver.

Data statements are prepared once per table and marked idempotent (every one is an upsert,
select or delete by full key with bound values: no counters, no now(), no list appends), so
the driver's retries and our callers' retries are safe. A batch's statements, of every table it
touches, run at once with at most [store.cassandra] concurrency in flight (`execute_concurrent`, as
Feast's Cassandra online store does); queries are routed token-aware within `local_dc`; the
consistency level is a setting (LOCAL_QUORUM default). A missing value is bound as UNSET_VALUE,
never null, so writes leave no tombstones (only an explicit CLEARED writes a null). The protocol
version is pinned. Schema: the files under feature_store/cql, applied in name order by
`migrate()` at ddl_consistency (ALL), each statement waiting for schema agreement, and recorded
in schema_migrations. DDL cannot be prepared: it and the migration ledger's one read are the
only unprepared CQL we send. Run `flywheel store migrate` once before the processors start.
Every driver error, a later page's included, becomes a StoreError (StoreUnavailable: retry).
"""
import re
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cassandra import (
    ConsistencyLevel,
    DriverException,
    InvalidRequest,
    OperationTimedOut,
    ReadTimeout,
    RequestExecutionException,
    Unavailable,
    UnresolvableContactPoints,
    WriteTimeout,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.concurrent import execute_concurrent
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, RetryPolicy, TokenAwarePolicy
from cassandra.protocol import ErrorMessage, ServerError
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement, SimpleStatement, dict_factory
from flywheel.feature_store.base import CLEARED, Clock, FeatureStore, Row, Write
from flywheel.feature_store.errors import StoreConfigError, StoreError, StoreNotMigrated, StoreTimeout, StoreUnavailable
from flywheel.feature_store.schema import JSON_COLUMNS, Table, from_json, migrations, pending, tables, to_json
from flywheel.feature_store.settings import CassandraSettings, StoreSettings

PAGE = 1000   # rows per page of a range read
# The node sizes a batch (batch_size_warn_threshold_in_kb) by its cells: each value and its
# timestamp. Measured on 4.0: ten feedback rows of 3,730 value bytes in 170 cells were 5,140
# bytes to it. Counting the values alone let such batches pass the warning, logged per batch.
CELL_BYTES, ROW_BYTES = 8, 16
DDL = "ddl"   # the execution profile of schema changes


def open_backend(settings: StoreSettings, data_dir: Path, clock: Clock) -> "CassandraStore":
    return CassandraStore(settings, clock)


# ---- the CQL we prepare, derived from the table definitions
def insert_cql(t: Table) -> str:
    return (f"INSERT INTO {t.name} ({', '.join(t.columns)}) "
            f"VALUES ({', '.join('?' * len(t.columns))}) USING TTL ?")


def select_cql(t: Table, width: int) -> str:
    where = " AND ".join(f"{c} = ?" for c in t.primary_key[:width])
    return f"SELECT {', '.join(t.columns)} FROM {t.name} WHERE {where}"


def select_in_cql(t: Table) -> str:
    """Many partitions (the whole partition key given) in one statement: `last IN ?`."""
    *fixed, last = t.partition_key
    return f"SELECT {', '.join(t.columns)} FROM {t.name} WHERE {''.join(f'{c} = ? AND ' for c in fixed)}{last} IN ?"


def range_cql(t: Table) -> str:
    first = t.clustering[0]
    return f"{select_cql(t, len(t.partition_key))} AND {first} >= ? AND {first} < ?"


def delete_cql(t: Table) -> str:
    return f"DELETE FROM {t.name} WHERE {' AND '.join(f'{c} = ?' for c in t.primary_key)}"


class IdempotentRetryPolicy(RetryPolicy):
    """Retry a timed-out write or a failed request once, and only for statements marked
    idempotent; otherwise the error goes to the caller (who retries through feature_store.retry)."""

    def on_write_timeout(self, query, consistency, write_type, required_responses,
                         received_responses, retry_num):
        if retry_num == 0 and getattr(query, "is_idempotent", False):
            return self.RETRY, consistency
        return self.RETHROW, None

    def on_request_error(self, query, consistency, error, retry_num):
        if retry_num == 0 and getattr(query, "is_idempotent", False):
            return self.RETRY_NEXT_HOST, None
        return self.RETHROW, None


class CassandraStore(FeatureStore):
    backend = "cassandra"

    def __init__(self, settings: StoreSettings, clock: Clock):
        super().__init__(settings, clock)
        if not settings.cassandra.hosts:
            raise StoreConfigError("store backend cassandra needs [store.cassandra] hosts "
                                   "(FLYWHEEL_CASSANDRA_HOSTS=host1,host2)")
        if not re.fullmatch(r"[A-Za-z]\w{0,47}", settings.cassandra.keyspace):
            raise StoreConfigError(f"keyspace {settings.cassandra.keyspace!r} is not a valid CQL name")
        with self._errors():
            self.cluster = make_cluster(settings.cassandra)
        self._prepared: dict[tuple, PreparedStatement] = {}
        try:
            with self._errors():
                self.session = self.cluster.connect()
        except StoreError:
            self.cluster.shutdown()
            raise
        try:
            with self._errors():
                self.session.set_keyspace(settings.cassandra.keyspace)
        except StoreNotMigrated:
            pass   # migrate() creates it; data calls before that raise StoreNotMigrated

    def __repr__(self) -> str:
        return f"CassandraStore({','.join(self.settings.cassandra.hosts)}/{self.settings.cassandra.keyspace})"

    # ---- lifecycle
    def migrate(self) -> list[str]:
        ks = self.settings.cassandra.keyspace
        with self._errors():
            self._ddl(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
                      f"{replication_cql(keyspace_replication(self.settings.cassandra))}")
            self.session.set_keyspace(ks)
            for statement in migrations()[0].statements:   # the ledger itself
                self._ddl(statement)
            applied = {r["name"]: r["checksum"] for r in
                       self.session.execute("SELECT name, checksum FROM schema_migrations", execution_profile=DDL)}
            todo = pending(applied)
            for migration in todo:
                for statement in migration.statements:
                    self._ddl(statement)
                self._upsert("schema_migrations", [{"name": migration.name, "checksum": migration.checksum,
                                                    "applied_at": self.clock()}])
        return [m.name for m in todo]

    def _ddl(self, statement: str) -> None:
        """A schema change at ddl_consistency; the driver then waits (up to schema_agreement_wait_s)
        for every node to report the same schema. Without agreement the next statement could
        reach a node that does not know the table yet: retry later."""
        result = self.session.execute(SimpleStatement(statement, is_idempotent=True), execution_profile=DDL)
        if not result.response_future.is_schema_agreed:
            raise StoreUnavailable(f"{self!r}: nodes did not agree on the schema within "
                                   f"{self.settings.cassandra.schema_agreement_wait_s:g}s after: {statement[:60]}")

    def close(self) -> None:
        self.cluster.shutdown()

    # ---- primitives
    def _write(self, writes: Sequence[Write]) -> None:
        """Rows sharing a partition go in UNLOGGED batches of rows_per_batch (one mutation each:
        a feedback bucket's shard gets a batch's worth of rows at once); the rest one statement
        a row. Deletes one statement a key."""
        statements = []
        for w in writes:
            if w.rows:
                statements += self._inserts(tables()[w.table], w.rows, int(w.ttl_s or 0))
            if w.deletes:
                delete = self._statement(w.table, "delete")
                statements += [(delete, tuple(key)) for key in w.deletes]
        self._run(statements)

    def _inserts(self, t: Table, rows: Sequence[Row], ttl: int) -> list[tuple]:
        """Rows grouped by the node that owns their partition (its first replica), then UNLOGGED
        batches of rows_per_batch per group: a batch is one request that its token-aware
        coordinator applies locally (and sends to the partitions' other replicas), never
        fanned out over the cluster; a group of one row is a plain statement."""
        insert = self._statement(t.name, "insert")
        groups: dict[object, list] = {}
        for row in rows:
            bound = insert.bind(tuple(_encode(c, row[c]) for c in t.columns) + (ttl,))
            replicas = self.cluster.metadata.get_replicas(self.settings.cassandra.keyspace, bound.routing_key)
            groups.setdefault(replicas[0] if replicas else None, []).append(bound)
        out = []
        for bounds in groups.values():
            for chunk in self._chunks(bounds):
                if len(chunk) == 1:
                    out.append((chunk[0], None))
                    continue
                batch = BatchStatement(BatchType.UNLOGGED)
                for bound in chunk:
                    batch.add(bound)
                batch.is_idempotent = True
                out.append((batch, None))
        return out

    def _chunks(self, bounds: list) -> Iterator[list]:
        """Runs of at most rows_per_batch statements and batch_bytes as the node counts a batch
        (a larger row goes alone)."""
        chunk, size, limits = [], 0, self.settings.cassandra
        for bound in bounds:
            n = ROW_BYTES + sum(len(v) + CELL_BYTES for v in bound.values if isinstance(v, bytes))
            if chunk and (len(chunk) == limits.rows_per_batch or size + n > limits.batch_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(bound)
            size += n
        if chunk:
            yield chunk

    def _select(self, table: str, keys: Sequence[tuple]) -> list[Row]:
        """Keys that name whole partitions are read keys_per_read at a time with `IN`; longer
        keys (into a partition's rows) one statement each."""
        t = tables()[table]
        width = len(t.partition_key)
        groups: dict[tuple, list] = {}
        statements = []
        for k in keys:
            if len(k) == width:
                groups.setdefault(tuple(k[:-1]), []).append(k[-1])
            else:
                statements.append((self._statement(table, "select", len(k)), tuple(k)))
        select_in = self._statement(table, "select_in") if groups else None
        step = self.settings.cassandra.keys_per_read
        for prefix, lasts in groups.items():
            statements += [(select_in, (*prefix, lasts[i:i + step])) for i in range(0, len(lasts), step)]
        with self._errors():   # iterating a result can fetch its next page
            return [_decode(t, row) for result in self._run(statements) for row in result]

    def _select_range(self, table: str, partition: tuple, start: int, end: int) -> Iterator[Row]:
        t = tables()[table]
        statement = self._statement(table, "range").bind((*partition, start, end))
        statement.fetch_size = PAGE
        with self._errors():
            result = self.session.execute(statement)
        rows = iter(result)   # the driver fetches the next page when this one is consumed
        while True:
            with self._errors():
                row = next(rows, None)
            if row is None:
                return
            yield _decode(t, row)

    def _bucket_bounds(self, table: str, prefix: tuple) -> tuple[int, int] | None:
        # Partition keys cannot be range-scanned by prefix: read the distinct keys (one row per
        # partition, not per record) and keep this prefix's buckets.
        t = tables()[table]
        statement = SimpleStatement(f"SELECT DISTINCT {', '.join(t.partition_key)} FROM {table}", fetch_size=PAGE)
        with self._errors():
            buckets = [row["bucket"] for row in self.session.execute(statement)
                       if tuple(row[c] for c in t.partition_key[:len(prefix)]) == tuple(prefix)]
        return (min(buckets), max(buckets)) if buckets else None

    # ---- statements, concurrency, errors
    def _statement(self, table: str, kind: str, width: int = 0) -> PreparedStatement:
        key = (table, kind, width)
        if key not in self._prepared:
            t = tables()[table]
            cql = {"insert": lambda: insert_cql(t), "select": lambda: select_cql(t, width),
                   "select_in": lambda: select_in_cql(t),
                   "range": lambda: range_cql(t), "delete": lambda: delete_cql(t)}[kind]()
            with self._errors():
                prepared = self.session.prepare(cql)
            prepared.is_idempotent = True
            self._prepared[key] = prepared
        return self._prepared[key]

    def _run(self, statements: Sequence[tuple[PreparedStatement, tuple]]) -> list:
        """Every statement at once, settings.cassandra.concurrency in flight; results in statement order."""
        if not statements:
            return []
        with self._errors():
            results = execute_concurrent(self.session, statements, concurrency=self.settings.cassandra.concurrency,
                                         raise_on_first_error=True)
        return [result for _, result in results]

    @contextmanager
    def _errors(self):
        try:
            yield
        except (OperationTimedOut, ReadTimeout, WriteTimeout) as e:
            raise StoreTimeout(f"{self!r}: {type(e).__name__}: {e}") from e
        except (NoHostAvailable, Unavailable, ConnectionException) as e:
            raise StoreUnavailable(f"{self!r}: {type(e).__name__}: {e}") from e
        except InvalidRequest as e:
            text = str(e)
            if "unconfigured table" in text or "does not exist" in text or "No keyspace" in text:
                raise StoreNotMigrated(f"{self!r}: {text}; run `flywheel store migrate`") from e
            raise StoreError(f"{self!r}: {text}") from e
        except UnresolvableContactPoints as e:
            raise StoreUnavailable(f"{self!r}: no cassandra host name resolves ({e})") from e
        except (RequestExecutionException, ServerError) as e:   # overloaded, bootstrapping, truncate errors
            raise StoreUnavailable(f"{self!r}: {type(e).__name__}: {e}") from e
        except (DriverException, ErrorMessage) as e:   # protocol and validation errors: a bug or a setting
            raise StoreError(f"{self!r}: {type(e).__name__}: {e}") from e


def consistency_level(name: str) -> int:
    level = ConsistencyLevel.name_to_value.get(name.upper())
    if level is None:
        raise StoreConfigError(f"consistency {name!r} is not one of {', '.join(ConsistencyLevel.name_to_value)}")
    return level


def make_cluster(settings: CassandraSettings) -> Cluster:
    if not settings.local_dc:
        raise StoreConfigError("[store.cassandra] local_dc is empty: name the data centre this process runs in "
                               "(FLYWHEEL_STORE_CASSANDRA_LOCAL_DC)")

    def profile(consistency: str, timeout_s: float) -> ExecutionProfile:
        return ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.local_dc)),
            retry_policy=IdempotentRetryPolicy(), consistency_level=consistency_level(consistency),
            request_timeout=timeout_s, row_factory=dict_factory)

    auth = (PlainTextAuthProvider(settings.username, settings.password.reveal()) if settings.username else None)
    profiles = {EXEC_PROFILE_DEFAULT: profile(settings.consistency, settings.request_timeout_s),
                DDL: profile(settings.ddl_consistency, settings.request_timeout_s + settings.schema_agreement_wait_s)}
    return Cluster(contact_points=settings.hosts, port=settings.port,
                   execution_profiles=profiles, auth_provider=auth, protocol_version=settings.protocol_version,
                   max_schema_agreement_wait=settings.schema_agreement_wait_s,
                   ssl_context=tls_context(settings), connect_timeout=settings.connect_timeout_s)


def tls_context(settings: CassandraSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.tls_ca_file or None)
        context.check_hostname = settings.tls_verify_hostname
        if settings.tls_cert_file:
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None)
    except (OSError, ssl.SSLError) as e:
        raise StoreConfigError(f"[store.cassandra] TLS settings: {e}") from e
    return context


def keyspace_replication(settings: CassandraSettings) -> dict:
    """The configured replication, else one replica in the local DC (a development default that
    names a DC that exists, unlike a fixed name)."""
    return settings.replication or {"class": "NetworkTopologyStrategy", settings.local_dc: 1}


def replication_cql(replication: dict) -> str:
    """{'class': 'NetworkTopologyStrategy', 'dc1': 3} as a CQL map literal."""
    if "class" not in replication:
        raise StoreConfigError(f"store replication {replication!r} has no 'class'")
    items = []
    for key, value in replication.items():
        if not re.fullmatch(r"[\w.\-]+", str(key)) or not re.fullmatch(r"[\w.\-]+", str(value)):
            raise StoreConfigError(f"store replication entry {key!r}: {value!r} is not a plain name or number")
        items.append(f"'{key}': '{value}'")
    return "{" + ", ".join(items) + "}"


def _encode(column: str, value: Any) -> Any:
    if value is None:
        return UNSET_VALUE   # no value: leave the column alone (a null is a tombstone)
    if value is CLEARED:
        return None
    return to_json(value) if column in JSON_COLUMNS else value


def _decode(t: Table, row: dict) -> Row:
    out = {}
    for column, kind in t.columns.items():
        value = row[column]
        if column in JSON_COLUMNS and value is not None:
            value = from_json(value)
        elif kind.startswith("frozen<map"):
            value = dict(value or {})
        elif kind.startswith("frozen<list"):
            value = list(value or [])
        out[column] = value
    return out
