"""Kafka settings, passed in by whoever builds clients (never read from globals).

Secrets are `Secret`s: each can come from the config file, the environment or a file named by
`<field>_file` (a mounted Kubernetes secret), and none ever prints (see flywheel/config.py)."""
from dataclasses import dataclass

from flywheel.schemas.secret import Secret
from flywheel.schemas.setting import setting

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
    partitions: int = setting(4, unit="partitions", min=1,
                              doc="partitions of each topic Flywheel creates (a model added later takes as "
                                  "many as `labels` has)")
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
    embedded_registry_connections: int = setting(
        64, unit="connections", min=1, doc="connections the embedded registry's REST API serves at once (a thread "
                                           "each); more are answered 503, which clients retry")
    session_timeout_ms: int = setting(10000, unit="ms", min=1000,
                                      doc="consumer group session timeout (a join waits about half of it)")
    topic_generations: bool = setting(
        False, doc="write the busy topics as generations that `flywheel up` rotates and deletes, since the "
                   "embedded broker applies no retention (on by itself when bootstrap is empty; `flywheel up` "
                   "sets it for its processors)")
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
    def generations_on(self) -> bool:
        return self.topic_generations or not self.bootstrap

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap or f"127.0.0.1:{self.embedded_port}"


@dataclass
class RotationSettings:
    """TOML [rotation], env FLYWHEEL_ROTATION_<FIELD>: how `flywheel up` rotates the busy topics'
    generations on the embedded broker (streams/rotation.py). Only the embedded stack rotates.

    Tansu lists every batch a partition holds on each fetch that finds records and on each
    ListOffsets: broker CPU per record read grew from 0.08 ms at 2,000 single-record batches held
    to 3.4 ms at 24,000, hence generations small enough to stay cheap."""
    generation_records: int = setting(20_000, unit="records", min=1,
                                      doc="the current generation's size (all partitions, as the broker counts "
                                          "batch ends) at which every busy topic turns to its next one")
    generation_seconds: float = setting(900.0, unit="s", min=1.0,
                                        doc="time after which the current generation turns anyway, so a quiet "
                                            "topic's old records go too")
    standby_generations: int = setting(
        3, unit="generations", min=1, doc="generations created ahead, empty and already subscribed, so that a turn "
                                          "changes no reader's subscription: each consumer group rebalances once "
                                          "every this many turns (a pause of seconds on the embedded broker)")
    keep_seconds: float = setting(300.0, unit="s", min=0.0,
                                  doc="a sealed generation's records stay at least this long: the replay depth; "
                                      "the broker holds about keep_seconds x rate records of each busy topic, and "
                                      "up to standby_generations x generation_records more (old generations are "
                                      "retired when new standby ones are made)")
    check_seconds: float = setting(15.0, unit="s", min=0.1, doc="how often the rotator looks")
    retire_seconds: float = setting(20.0, unit="s", min=0.0,
                                    doc="a passed generation is marked retired, and deleted this much later: "
                                        "every reader lists topics every 2 s and drops it meanwhile")
    abandon_seconds: float = setting(3600.0, unit="s", min=1.0,
                                     doc="a group whose commits have not moved for this long no longer holds "
                                         "generations (a reader gone for good would make the broker grow again)")
