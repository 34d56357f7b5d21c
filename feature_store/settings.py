"""Store settings: TOML [store] with one table per backend ([store.sqlite], [store.cassandra]),
env FLYWHEEL_STORE_<FIELD> and FLYWHEEL_STORE_<BACKEND>_<FIELD> (FLYWHEEL_CASSANDRA_HOSTS is an
alias of [store.cassandra] hosts). Build with `config.section(StoreSettings, "store")`.

What every backend shares (which backend, partition widths, retention) is in [store]; what only
one backend reads is in its own table, as Feast's online-store config does."""
from dataclasses import dataclass
from typing import Any

from flywheel.schemas.secret import Secret
from flywheel.schemas.setting import setting

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
CONSISTENCY_LEVELS = ("ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
                      "LOCAL_ONE")


@dataclass
class SqliteSettings:
    """TOML [store.sqlite]: the embedded default backend."""
    path: str = setting("store.sqlite", doc="database file; a relative path is inside the data dir")
    busy_timeout_ms: int = setting(10_000, unit="ms", min=0,
                                   doc="how long a write waits for another process's lock")


@dataclass
class CassandraSettings:
    """TOML [store.cassandra]: Apache Cassandra (or a CQL-compatible cluster)."""
    hosts: list[str] = setting(factory=list, doc="contact points (env alias FLYWHEEL_CASSANDRA_HOSTS)")
    port: int = setting(9042, unit="TCP port", min=1, max=65535, doc="native protocol port")
    keyspace: str = setting("flywheel", doc="keyspace of every table")
    local_dc: str = setting("datacenter1", doc="queries go to this data centre's replicas "
                                               "(Cassandra's default name)")
    consistency: str = setting("LOCAL_QUORUM", choices=CONSISTENCY_LEVELS,
                               doc="consistency level of reads and writes")
    ddl_consistency: str = setting("ALL", choices=CONSISTENCY_LEVELS,
                                   doc="consistency level of schema changes: every node agrees on the schema")
    schema_agreement_wait_s: float = setting(60.0, unit="s", min=0,
                                             doc="how long a schema change waits for agreement")
    protocol_version: int = setting(4, unit="protocol version", min=3, max=6,
                                    doc="pinned: no negotiation (and no downgrade warning) per connect")
    username: str = setting("", doc="user of password authentication; empty: none")
    password: Secret = setting(Secret(), doc="password (or password_file / FLYWHEEL_STORE_CASSANDRA_PASSWORD_FILE)")
    tls: bool = setting(False, doc="connect with TLS")
    tls_ca_file: str = setting("", doc="PEM file of the CA the nodes' certificates are checked against")
    tls_cert_file: str = setting("", doc="PEM client certificate")
    tls_key_file: str = setting("", doc="PEM client key")
    tls_verify_hostname: bool = setting(True, doc="check the node's certificate names the host")
    replication: dict[str, Any] = setting(
        factory=dict, doc="the keyspace's replication when `store migrate` creates it; empty: one replica in "
                          "local_dc (development). Production: {class = \"NetworkTopologyStrategy\", <dc> = 3}")
    concurrency: int = setting(64, unit="statements", min=1, doc="in-flight statements per batch call")
    keys_per_read: int = setting(50, unit="keys", min=1,
                                 doc="keys read by one `IN` statement: one round trip instead of one per key; "
                                     "large IN lists load one coordinator, so keep it modest")
    rows_per_batch: int = setting(10, unit="rows", min=1,
                                  doc="rows of one partition written by one UNLOGGED batch (one mutation)")
    batch_bytes: int = setting(5000, unit="bytes", min=1,
                               doc="a batch's size at most as the node counts it: under its "
                                   "batch_size_warn_threshold_in_kb (5 KB by default)")
    request_timeout_s: float = setting(10.0, unit="s", min=0, doc="timeout of one statement")
    connect_timeout_s: float = setting(10.0, unit="s", min=0, doc="timeout of connecting to a node")


@dataclass
class StoreSettings:
    """TOML [store], env FLYWHEEL_STORE_<FIELD>: the feature and feedback store."""
    backend: str = setting("sqlite", choices=("sqlite", "cassandra"),
                           doc="sqlite (embedded default) or cassandra; its table holds its own settings")
    feedback_bucket_ms: int = setting(HOUR_MS, unit="ms", min=1,
                                      doc="time width of a feedback partition; changing it after data was "
                                          "written hides the old rows from range reads")
    metrics_bucket_ms: int = setting(DAY_MS, unit="ms", min=1,
                                     doc="time width of a window-metrics partition (as feedback_bucket_ms)")
    feedback_shards: int = setting(4, unit="partitions", min=1,
                                   doc="partitions per feedback bucket (spread over replicas)")
    feedback_retention_days: float = setting(90.0, unit="days", min=0, doc="how long feedback rows are kept")
    metrics_retention_days: float = setting(400.0, unit="days", min=0, doc="how long window metrics are kept")
    monitor_partials_retention_days: float = setting(
        7.0, unit="days", min=0, doc="how long the monitor's partial windows and progress are kept "
                                     "(needed until merged)")
    sqlite: SqliteSettings = setting(factory=SqliteSettings, doc="[store.sqlite]")
    cassandra: CassandraSettings = setting(factory=CassandraSettings, doc="[store.cassandra]")

    @property
    def feedback_retention_s(self) -> int:
        return int(self.feedback_retention_days * 86_400)

    @property
    def metrics_retention_s(self) -> int:
        return int(self.metrics_retention_days * 86_400)

    @property
    def monitor_partials_retention_s(self) -> int:
        return int(self.monitor_partials_retention_days * 86_400)
