"""Kafka settings, passed in by whoever builds clients (never read from globals).

Secrets are `Secret`s: each can come from the config file, the environment or a file named by
`<field>_file` (a mounted Kubernetes secret), and none ever prints (see flywheel/config.py)."""
from dataclasses import dataclass

from schemas.secret import Secret
from schemas.setting import setting

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")


@dataclass
class KafkaSettings:
    """TOML [kafka], env FLYWHEEL_KAFKA_<FIELD>: the cluster, its topics and the schema registry."""
    bootstrap: str = setting("", doc="Kafka bootstrap servers (host:port,...); empty: the embedded "
                                 "broker on embedded_port (env alias FLYWHEEL_BOOTSTRAP)")
    embedded_port: int = setting(19092, unit="TCP port", min=1, max=65535,
                                 doc="where `flywheel up` runs the embedded broker")
    topic_prefix: str = setting("", doc="prefix of every topic name (env alias FLYWHEEL_TOPIC_PREFIX)")
    partitions: int = setting(4, unit="partitions", min=1, doc="partitions of each topic Flywheel creates")
    replication: int = setting(1, unit="replicas", min=1, doc="replication factor of each topic Flywheel creates")
    schema_registry_url: str = setting("", doc="Confluent Schema Registry URL; empty: the embedded registry "
                                           "in the data dir (env alias FLYWHEEL_SCHEMA_REGISTRY_URL)")
    schema_registry_username: str = setting("", doc="Schema Registry HTTP basic-auth user (credentials "
                                                "never go in the URL)")
    schema_registry_password: Secret = setting(Secret(), doc="Schema Registry HTTP basic-auth password "
                                                         "(or schema_registry_password_file)")
    schema_registry_ca_location: str = setting("", doc="PEM file of the CA the Schema Registry's TLS "
                                                   "certificate is checked against")
    schema_registry_certificate_location: str = setting("", doc="PEM client certificate for the Schema Registry")
    schema_registry_key_location: str = setting("", doc="PEM client key for the Schema Registry")
    embedded_registry_port: int = setting(18081, unit="TCP port", min=1, max=65535,
                                          doc="where `flywheel up` serves the embedded registry's REST API")
    session_timeout_ms: int = setting(10000, unit="ms", min=1000,
                                      doc="consumer group session timeout (a join waits about half of it)")
    max_message_bytes: int = setting(1_048_576, unit="bytes", min=1024,
                                     doc="the largest record Flywheel writes: its producers' message.max.bytes "
                                         "and, on the topics it creates, max.message.bytes")
    client_overrides: dict[str, str] = setting(
        factory=dict, repr=False, doc="librdkafka properties passed as they are (may hold secrets)")
    security_protocol: str = setting("PLAINTEXT", choices=SECURITY_PROTOCOLS,
                                     doc="broker security (librdkafka names)")
    sasl_mechanism: str = setting("", choices=SASL_MECHANISMS, doc="SASL mechanism; empty: none")
    sasl_username: str = setting("", doc="SASL user")
    sasl_password: Secret = setting(Secret(), doc="SASL password (or sasl_password_file)")
    ssl_ca_location: str = setting("", doc="PEM file of the CA the brokers' certificates are checked against")
    ssl_certificate_location: str = setting("", doc="PEM client certificate")
    ssl_key_location: str = setting("", doc="PEM client key")
    ssl_key_password: Secret = setting(Secret(), doc="password of the client key (or ssl_key_password_file)")
    model_signing_key: Secret = setting(
        Secret(), doc="HMAC-SHA256 key of ModelEvents on the `models` topic: set, writers sign and readers "
                      "refuse unsigned or tampered events; every reader and writer of that topic holds it")

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap or f"127.0.0.1:{self.embedded_port}"
