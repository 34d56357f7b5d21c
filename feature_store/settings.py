"""Store settings: TOML section [store], env FLYWHEEL_STORE_<FIELD> (FLYWHEEL_CASSANDRA_HOSTS is an
alias of cassandra_hosts). Build with `config.section(StoreSettings, "store")`."""
from dataclasses import dataclass, field
from typing import Any

from schemas.secret import Secret

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass
class StoreSettings:
    backend: str = "sqlite"                 # "sqlite" (embedded default) | "cassandra"
    # sqlite: a relative path is inside the data dir
    path: str = "store.sqlite"
    busy_timeout_ms: int = 10_000
    # Partition widths. Changing them after data was written hides the old rows from range
    # reads, so they are settings of the deployment, not of a run.
    feedback_bucket_ms: int = HOUR_MS
    metrics_bucket_ms: int = DAY_MS
    feedback_shards: int = 4                # partitions per feedback bucket (spread over replicas)
    # Tables that grow with traffic or time expire their rows (Cassandra TTL, SQLite expires_at).
    feedback_retention_days: float = 90.0
    metrics_retention_days: float = 400.0
    monitor_partials_retention_days: float = 7.0   # partials and progress: needed until merged
    # cassandra
    cassandra_hosts: list[str] = field(default_factory=list)
    cassandra_port: int = 9042
    keyspace: str = "flywheel"
    local_dc: str = "datacenter1"           # queries go to this DC's replicas (Cassandra's default name)
    consistency: str = "LOCAL_QUORUM"
    # Schema changes wait for every node to agree on the schema (ALL), up to this long.
    ddl_consistency: str = "ALL"
    schema_agreement_wait_s: float = 60.0
    protocol_version: int = 4               # pinned: no negotiation (and no downgrade warning) per connect
    username: str = ""
    password: Secret = Secret()             # or password_file / FLYWHEEL_STORE_PASSWORD_FILE
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_verify_hostname: bool = True
    # The keyspace's replication when `store migrate` creates it. Empty: one replica in local_dc
    # (development). Production: {"class": "NetworkTopologyStrategy", "<dc>": 3} with LOCAL_QUORUM.
    replication: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 64                   # in-flight statements per batch call
    # Keys read by one `IN` statement (one partition key each): one round trip and one request
    # for the node instead of one per key. Large IN lists load one coordinator: keep it modest.
    keys_per_read: int = 50
    # Rows of one partition written by one UNLOGGED batch (applied as one mutation), and at most
    # batch_bytes as the node counts them (values and cell timestamps): under its
    # batch_size_warn_threshold_in_kb (5 KB by default), past which it logs a warning for every
    # batch (window rows are 1-2 KB each, a feedback row of 25 features about 500 bytes).
    rows_per_batch: int = 10
    batch_bytes: int = 5000
    request_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0

    @property
    def feedback_retention_s(self) -> int:
        return int(self.feedback_retention_days * 86_400)

    @property
    def metrics_retention_s(self) -> int:
        return int(self.metrics_retention_days * 86_400)

    @property
    def monitor_partials_retention_s(self) -> int:
        return int(self.monitor_partials_retention_days * 86_400)
