"""Producer, consumer and admin factories with production defaults.

Producers are idempotent with acks=all (on the embedded broker's generations, only transactional
ones: see NOT_IDEMPOTENT); consumers read committed records only and never
auto-commit (processors commit after their output is safe). `linger.ms` stays above zero:
a zero linger overloads the embedded broker with tiny requests.
"""
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from flywheel.streams.generations import RoutingConsumer, RoutingProducer, split
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog

PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 2,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 500000,
    # Flywheel creates every topic it writes. A producer allowed to would create again, at its
    # next metadata refresh, every deleted topic it once wrote to: the embedded broker's old
    # generations came back empty every five minutes, and every reader rebalanced twice for them.
    "allow.auto.create.topics": False,
}

CONSUMER_DEFAULTS = {
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    # How long a fetch that finds nothing waits at the broker. The embedded broker answers at the
    # end of the wait even when records arrive meanwhile, and an idle consumer sends a fetch per
    # wait: at 5 ms six idle consumers kept 0.18 of a core of it busy, at 100 ms 0.02 (records
    # then arrive 29 ms later at the median instead of 4). Only the request -> prediction path
    # needs the shorter wait: the worker sets LOW_LATENCY_FETCH.
    "fetch.wait.max.ms": 100,
    "enable.partition.eof": False,
}


LOW_LATENCY_FETCH = {"fetch.wait.max.ms": 5}


def security_config(settings: KafkaSettings) -> dict:
    """librdkafka's security properties from the settings (empty ones left out)."""
    conf = {"security.protocol": settings.security_protocol.upper()}
    for name, value in (("sasl.mechanism", settings.sasl_mechanism), ("sasl.username", settings.sasl_username),
                        ("sasl.password", settings.sasl_password.reveal()),
                        ("ssl.ca.location", settings.ssl_ca_location),
                        ("ssl.certificate.location", settings.ssl_certificate_location),
                        ("ssl.key.location", settings.ssl_key_location),
                        ("ssl.key.password", settings.ssl_key_password.reveal())):
        if value:
            conf[name] = value
    return conf


def _base(settings: KafkaSettings) -> dict:
    return {"bootstrap.servers": settings.bootstrap_servers, **security_config(settings),
            **settings.client_overrides}


# The embedded broker keeps one document of every idempotent producer's sequence per partition it
# ever wrote, never pruned (not for deleted topics either), and rewrites it on every produce: its
# CPU per produce grew 3.2 times once eight producers had written to 400 since-deleted partitions
# each (bare broker, measured). Generations write new partitions at every turn, so there a
# producer is idempotent only where its transactions need it; the others are at-least-once
# writers whose readers already take a record twice (a retried batch may now be written twice),
# and one request in flight keeps a retry from reordering (the models topic's events).
NOT_IDEMPOTENT = {"enable.idempotence": False, "max.in.flight.requests.per.connection": 1}


def producer_config(settings: KafkaSettings, generations: bool, transactional_id: str | None = None,
                    **overrides) -> dict:
    conf = {**_base(settings), **PRODUCER_DEFAULTS, **(NOT_IDEMPOTENT if generations and not transactional_id else {}),
            "message.max.bytes": settings.max_message_bytes, **overrides}
    if transactional_id:
        conf["transactional.id"] = transactional_id
    return conf


def make_producer(settings: KafkaSettings, transactional_id: str | None = None, **overrides) -> Producer:
    generations = uses_generations(settings)
    conf = producer_config(settings, generations, transactional_id, **overrides)
    return RoutingProducer(conf, TopicCatalog(settings).rotates) if generations else Producer(conf)


def make_consumer(settings: KafkaSettings, group_id: str, **overrides) -> Consumer:
    conf = {**_base(settings), **CONSUMER_DEFAULTS, "group.id": group_id,
            "session.timeout.ms": settings.session_timeout_ms, **overrides}
    return RoutingConsumer(conf, TopicCatalog(settings).rotates) if uses_generations(settings) else Consumer(conf)


def make_admin(settings: KafkaSettings) -> AdminClient:
    return AdminClient(_base(settings))


def uses_generations(settings: KafkaSettings) -> bool:
    """Whether the busy topics are written as generations: on (the embedded default, or
    `topic_generations`), or found on the broker. A client given the embedded broker's address
    (FLYWHEEL_BOOTSTRAP, as a client in another folder is) finds the standby generations that
    `flywheel up` makes at start, and routes and reads as its processors do: without it, its
    requests went to a sealed generation that the worker no longer fetched. One topic listing,
    only where an address is given and generations are not set."""
    if settings.generations_on:
        return True
    try:
        names = make_admin(settings).list_topics(timeout=5).topics
    except KafkaException:      # no broker yet: the produce or subscribe that follows says so
        return False
    return any(name.startswith(settings.topic_prefix) and split(name)[1] > 0 for name in names)
