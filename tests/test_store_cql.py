"""The CQL schema and statements, checked without a cluster (no Cassandra server runs here):

- every statement of every file under feature_store/cql parses whole with the CQL grammar that
  ships with cqlsh (cqlshlib, from the Apache Cassandra project). That grammar is newer than 4.0,
  so features added after 4.0 are rejected separately below. cqlshlib's backtracking parser
  takes exponential time in the number of column definitions, so a CREATE TABLE is parsed in
  slices: the key columns plus at most three others each, with its PRIMARY KEY and WITH clauses
  verbatim, until every column definition has been parsed;
- every prepared statement the backend derives from the tables parses too (bind markers are
  swapped for literals: cqlshlib's lexer has no '?');
- no column is a reserved CQL keyword (the driver's own list);
- the migration ledger refuses an applied file that was edited since.
What only a live 4.0 node can check (types, key constraints, TTL, paging) is the contract suite's
job when FLYWHEEL_CASSANDRA_HOSTS is set.
"""
import json
import re

import pytest
from cassandra import ConsistencyLevel, ReadTimeout
from cassandra.connection import ConnectionException
from cassandra.metadata import cql_keywords_reserved
from cassandra.protocol import ProtocolException, ServerError
from cassandra.query import UNSET_VALUE
from cqlshlib.cql3handling import CqlRuleSet
from flywheel.feature_store import (
    StoreConfigError,
    StoreError,
    StoreSettings,
    StoreTimeout,
    StoreUnavailable,
    open_store,
)
from flywheel.feature_store.base import CLEARED
from flywheel.feature_store.cassandra import (
    CassandraStore,
    _encode,
    delete_cql,
    insert_cql,
    keyspace_replication,
    make_cluster,
    range_cql,
    replication_cql,
    select_cql,
    select_in_cql,
    tls_context,
)
from flywheel.feature_store.schema import _CREATE, _split_top, migrations, parse_table, pending, tables
from flywheel.feature_store.settings import CassandraSettings
from flywheel.schemas.secret import Secret
from flywheel.streams.broker import free_port

NEWER_THAN_4_0 = re.compile(r"\bvector\s*<|STORAGE ATTACHED|\bSAI\b|MASKED WITH|UnifiedCompaction|"
                            r"\bCONTAINS KEY\b.*\bOR\b|\bBETWEEN\b", re.I)


def parses(statement: str) -> bool:
    tokens, _ = CqlRuleSet.cql_split_statements(statement + ";")
    tokens = [t for t in tokens if t]
    return len(tokens) == 1 and CqlRuleSet.cql_whole_parse_tokens(tokens[0], srcstr=statement) is not None


def slices(create: str, width: int = 3) -> list[str]:
    name, body = _CREATE.match(create).groups()
    suffix = create[len(f"CREATE TABLE IF NOT EXISTS {name} ({body})"):]     # " WITH ..." or nothing
    *columns, primary = _split_top(body)
    table = parse_table(create)
    keys = [c for c in columns if c.split()[0] in table.primary_key]
    others = [c for c in columns if c not in keys]
    return [f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(keys + others[i:i + width] + [primary])}){suffix}"
            for i in range(0, max(len(others), 1), width)]


def test_the_parser_rejects_broken_cql():
    assert parses("CREATE TABLE t (a text, b bigint, PRIMARY KEY (a, b))")
    assert not parses("CREATE TABLE t (a text, b bigint PRIMARY KEY (a, b))")
    assert not parses("SELEC a FROM t")
    assert not parses("SELECT a FROM t WHERE a = 1 AND")


RERUNNABLE = re.compile(r"CREATE TABLE IF NOT EXISTS |DROP TABLE IF EXISTS |ALTER TABLE \w+ WITH ")


@pytest.mark.parametrize("migration", migrations(), ids=lambda m: m.name)
def test_every_statement_of_every_cql_file_parses(migration):
    assert migration.statements
    for statement in migration.statements:
        for piece in slices(statement) if statement.startswith("CREATE") else [statement]:
            assert parses(piece), piece
        assert not NEWER_THAN_4_0.search(statement), statement
        assert RERUNNABLE.match(statement), "migrations must be safe to re-run"


def test_every_prepared_statement_parses():
    for t in tables().values():
        statements = [insert_cql(t), delete_cql(t), select_in_cql(t), *(select_cql(t, w) for w in
                                                      range(len(t.partition_key), len(t.primary_key) + 1))]
        if t.clustering:
            statements.append(range_cql(t))
        for cql in statements:
            assert parses(cql.replace("IN ?", "IN (0, 1)").replace("?", "0")), cql


def test_the_tables_the_backends_share_have_the_keys_the_queries_need():
    t = tables()
    assert "feedback_by_time" not in t      # replaced by the sharded table (002)
    assert t["feedback_by_time_shard"].partition_key == ("model", "model_version", "bucket", "shard")
    assert t["feedback_by_time_shard"].clustering == ("event_time", "request_id")
    assert t["metrics_by_window"].partition_key == ("model", "model_version", "bucket")
    assert t["online_features"].partition_key == ("feature_group", "entity_id")
    assert "pending_labels" not in t        # labels that come early are held by the joiner (005)
    reserved = {k.lower() for k in cql_keywords_reserved}
    for table in t.values():
        assert not reserved & {c.lower() for c in table.columns}, table.name


def test_table_parsing_reads_compound_and_simple_keys():
    t = parse_table("CREATE TABLE IF NOT EXISTS x (a text, b bigint, c frozen<map<text, double>>, d int, "
                    "PRIMARY KEY ((a, b), d)) WITH CLUSTERING ORDER BY (d DESC)")
    assert (t.partition_key, t.clustering, t.columns["c"]) == (("a", "b"), ("d",), "frozen<map<text, double>>")
    with pytest.raises(ValueError, match="not declared"):
        parse_table("CREATE TABLE IF NOT EXISTS x (a text, PRIMARY KEY (a, b))")


def test_an_applied_migration_that_changed_is_refused():
    first, *rest = migrations()
    assert pending({}) == [first, *rest]
    assert pending({first.name: first.checksum}) == rest
    with pytest.raises(StoreError, match="changed after they were applied"):
        pending({first.name: "an older checksum"})


def test_cassandra_settings_are_checked_before_connecting(tmp_path):
    with pytest.raises(StoreConfigError, match=r"\[store.cassandra\] hosts"):
        open_store(StoreSettings(backend="cassandra"))
    with pytest.raises(StoreConfigError, match="consistency"):
        make_cluster(CassandraSettings(hosts=["h"], consistency="MOST"))
    with pytest.raises(StoreConfigError, match="keyspace"):
        open_store(StoreSettings(backend="cassandra", cassandra=CassandraSettings(hosts=["h"], keyspace="x; DROP")))
    with pytest.raises(StoreConfigError, match="TLS"):
        tls_context(CassandraSettings(tls=True, tls_ca_file=str(tmp_path / "missing.pem")))
    with pytest.raises(StoreConfigError, match="unknown store backend"):
        open_store(StoreSettings(backend="mongo"))
    assert replication_cql({"class": "NetworkTopologyStrategy", "dc1": 3}) == \
        "{'class': 'NetworkTopologyStrategy', 'dc1': '3'}"
    with pytest.raises(StoreConfigError):
        replication_cql({"class": "SimpleStrategy", "replication_factor": "1'}; DROP"})
    assert keyspace_replication(CassandraSettings(local_dc="dc1")) == {"class": "NetworkTopologyStrategy", "dc1": 1}
    given = {"class": "NetworkTopologyStrategy", "east": 3}
    assert keyspace_replication(CassandraSettings(local_dc="east", replication=given)) == given


def test_tls_and_auth_settings_reach_the_cluster():
    cluster = make_cluster(CassandraSettings(hosts=["10.0.0.1"], tls=True, tls_verify_hostname=False,
                                         username="flywheel", password=Secret("pw"), local_dc="dc2",
                                         consistency="local_one"))
    profile = cluster.profile_manager.default
    assert cluster.ssl_context is not None and not cluster.ssl_context.check_hostname
    assert cluster.auth_provider.username == "flywheel"
    assert profile.load_balancing_policy._child_policy.local_dc == "dc2"
    assert profile.consistency_level == ConsistencyLevel.LOCAL_ONE
    assert cluster.protocol_version == 4                       # pinned: no negotiation per connect
    ddl = cluster.profile_manager.profiles["ddl"]
    assert ddl.consistency_level == ConsistencyLevel.ALL and cluster.max_schema_agreement_wait == 60.0
    with pytest.raises(StoreConfigError, match="local_dc"):
        make_cluster(CassandraSettings(hosts=["10.0.0.1"], local_dc=""))


def test_missing_values_are_unset_not_null_and_only_cleared_writes_a_null():
    assert _encode("confidence", None) is UNSET_VALUE and _encode("numeric", None) is UNSET_VALUE
    assert _encode("true_label", CLEARED) is None
    assert json.loads(_encode("numeric", {"x": None})) == {"x": None} and _encode("label", "a") == "a"


@pytest.mark.parametrize("error, mapped", [
    (ConnectionException("connection reset"), StoreUnavailable),
    (ServerError(0, "boom", {}), StoreUnavailable),
    (ReadTimeout("page 3"), StoreTimeout),
    (ProtocolException(0, "bad frame", {}), StoreError)])
def test_every_driver_error_becomes_a_store_error(error, mapped):
    store = CassandraStore.__new__(CassandraStore)     # the mapping needs no connection
    store.settings = StoreSettings(cassandra=CassandraSettings(hosts=["h"]))
    with pytest.raises(mapped):
        with store._errors():
            raise error


def test_an_unreachable_cluster_is_store_unavailable():
    with pytest.raises(StoreUnavailable, match="Unable to connect"):
        open_store(StoreSettings(backend="cassandra", cassandra=CassandraSettings(
            hosts=["127.0.0.1"], port=free_port(), connect_timeout_s=2)))
    with pytest.raises(StoreUnavailable, match="no cassandra host name resolves"):
        open_store(StoreSettings(backend="cassandra", cassandra=CassandraSettings(hosts=["no-such-host.invalid"])))
