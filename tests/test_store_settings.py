"""[store] settings from the environment, as the CLI and the stack build them."""
from flywheel.feature_store import StoreSettings
from flywheel.feature_store.cassandra import make_cluster, replication_cql

from flywheel.config import Config


def test_environment_fills_every_kind_of_store_setting():
    config = Config(env={"FLYWHEEL_CASSANDRA_HOSTS": "10.0.0.1, 10.0.0.2,10.0.0.3",
                         "FLYWHEEL_STORE_BACKEND": "cassandra",
                         "FLYWHEEL_STORE_CASSANDRA_REPLICATION": '{"class": "NetworkTopologyStrategy", "dc1": 3}',
                         "FLYWHEEL_STORE_CASSANDRA_TLS": "true", "FLYWHEEL_STORE_CASSANDRA_CONCURRENCY": "16",
                         "FLYWHEEL_STORE_CASSANDRA_LOCAL_DC": "dc1"})
    s = config.section(StoreSettings, "store")
    assert (s.backend, s.cassandra.hosts, s.cassandra.tls, s.cassandra.concurrency) == \
        ("cassandra", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], True, 16)
    assert replication_cql(s.cassandra.replication) == "{'class': 'NetworkTopologyStrategy', 'dc1': '3'}"
    assert make_cluster(s.cassandra).contact_points == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_defaults_are_the_embedded_store():
    s = Config(env={}).section(StoreSettings, "store")
    assert (s.backend, s.sqlite.path, s.cassandra.consistency) == ("sqlite", "store.sqlite", "LOCAL_QUORUM")
