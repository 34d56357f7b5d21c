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
    # cassandra
    cassandra_hosts: list[str] = field(default_factory=list)
    cassandra_port: int = 9042
    keyspace: str = "flywheel"
    local_dc: str = ""                      # empty: the DC of the first host contacted
    consistency: str = "LOCAL_QUORUM"
    username: str = ""
    password: Secret = Secret()             # or password_file / FLYWHEEL_STORE_PASSWORD_FILE
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_verify_hostname: bool = True
    replication: dict[str, Any] = field(default_factory=lambda: {"class": "SimpleStrategy",
                                                        "replication_factor": 1})
    concurrency: int = 64                   # in-flight statements per batch call
    request_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
