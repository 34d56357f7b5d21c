"""Kafka settings, passed in by whoever builds clients (never read from globals).

Secrets are `Secret`s: each can come from the config file, the environment or a file named by
`<field>_file` (a mounted Kubernetes secret), and none ever prints (see flywheel/config.py)."""
from dataclasses import dataclass, field

from schemas.secret import Secret

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass
class KafkaSettings:
    bootstrap: str = ""              # empty: the embedded broker on embedded_port
    embedded_port: int = 19092
    topic_prefix: str = ""
    partitions: int = 4
    replication: int = 1
    schema_registry_url: str = ""    # empty: the embedded registry in the data dir
    # Confluent Schema Registry: HTTP basic auth and TLS (credentials never go in the URL).
    schema_registry_username: str = ""
    schema_registry_password: Secret = Secret()
    schema_registry_ca_location: str = ""
    schema_registry_certificate_location: str = ""
    schema_registry_key_location: str = ""
    embedded_registry_port: int = 18081  # where `flywheel up` serves the embedded registry's REST API
    session_timeout_ms: int = 10000
    # Write high-volume topics as generations that the embedded stack rotates and deletes
    # (streams/generations.py), since the embedded broker applies no retention. On by itself
    # when bootstrap is empty (the embedded broker); `flywheel up` sets it for its processors.
    topic_generations: bool = False
    # The largest record Flywheel writes: its producers' message.max.bytes and, on the topics
    # it creates, max.message.bytes (set together, so what a producer accepts the broker keeps).
    max_message_bytes: int = 1_048_576
    client_overrides: dict[str, str] = field(default_factory=dict, repr=False)   # may hold secrets
    # Broker security (librdkafka names): PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""         # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: Secret = Secret()
    ssl_ca_location: str = ""        # PEM files
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""
    ssl_key_password: Secret = Secret()
    # HMAC-SHA256 key of ModelEvents on the `models` topic: set, writers sign and readers refuse
    # unsigned or tampered events. Here because every reader and writer of that topic holds it.
    model_signing_key: Secret = Secret()

    def __post_init__(self):
        if self.security_protocol.upper() not in SECURITY_PROTOCOLS:
            raise ValueError(f"security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")

    @property
    def generations_on(self) -> bool:
        return self.topic_generations or not self.bootstrap

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap or f"127.0.0.1:{self.embedded_port}"
