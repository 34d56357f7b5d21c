"""Kafka settings, passed in by whoever builds clients (never read from globals)."""
from dataclasses import dataclass, field


@dataclass
class KafkaSettings:
    bootstrap: str = ""              # empty: the embedded broker on embedded_port
    embedded_port: int = 19092
    topic_prefix: str = ""
    partitions: int = 4
    replication: int = 1
    schema_registry_url: str = ""    # empty: the embedded registry in the data dir
    embedded_registry_port: int = 18081  # where `flywheel up` serves the embedded registry's REST API
    session_timeout_ms: int = 10000
    client_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap or f"127.0.0.1:{self.embedded_port}"
