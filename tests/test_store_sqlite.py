"""What only the embedded backend has: the SQLite file itself (WAL, tables mirroring the CQL,
physical purge of expired rows) and its behaviour when another process holds the write lock."""
import sqlite3
import threading

import pytest
from flywheel.feature_store import OnlineFeatures, StoreSettings, StoreUnavailable, open_store, retrying
from flywheel.feature_store.schema import migrations, tables
from flywheel.feature_store.settings import SqliteSettings
from store_harness import FakeClock


def test_store_file_is_in_the_data_dir_in_wal_mode(tmp_path):
    with open_store(StoreSettings(), tmp_path) as store:
        assert store.path == tmp_path / "store.sqlite"
    db = sqlite3.connect(tmp_path / "store.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_cql_table_exists_with_the_same_columns_and_key(tmp_path):
    open_store(StoreSettings(), tmp_path).close()
    db = sqlite3.connect(tmp_path / "store.sqlite")
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == set(tables())
    for table in tables().values():
        info = db.execute(f"PRAGMA table_info({table.name})").fetchall()   # cid, name, type, notnull, default, pk
        assert [r[1] for r in info] == [*table.columns, "expires_at"]
        key = [name for _, name in sorted((r[5], r[1]) for r in info if r[5])]
        assert key == list(table.primary_key), table.name


def test_migrate_twice_applies_nothing_the_second_time(tmp_path):
    with open_store(StoreSettings(), tmp_path) as store:
        assert store.migrate() == []
    db = sqlite3.connect(tmp_path / "store.sqlite")
    assert sorted(r[0] for r in db.execute("SELECT name FROM schema_migrations")) == \
        [m.name for m in migrations()]


def test_expired_rows_are_purged_from_the_file(tmp_path):
    clock = FakeClock()
    store = open_store(StoreSettings(), tmp_path, clock=clock)
    store.put_online("g", [OnlineFeatures(f"e{i}", {"x": 1.0}, 0) for i in range(10)], ttl_s=1)
    store.put_online("g", [OnlineFeatures("keep", {"x": 1.0}, 0)])
    clock.now += 2_000
    assert store.purge_expired() == 10
    assert store.counts()["online_features"] == 1
    store.put_online("g", [OnlineFeatures("e0", {"x": 2.0}, 0)], ttl_s=1)
    clock.now += 61_000          # writes purge on their own once a minute
    store.put_online("g", [OnlineFeatures("e1", {"x": 2.0}, 0)], ttl_s=1)
    raw = sqlite3.connect(tmp_path / "store.sqlite").execute("SELECT entity_id FROM online_features").fetchall()
    assert sorted(r[0] for r in raw) == ["e1", "keep"]


def test_a_locked_database_is_store_unavailable_and_a_retry_gets_through(tmp_path):
    store = open_store(StoreSettings(sqlite=SqliteSettings(busy_timeout_ms=50)), tmp_path)
    other = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")              # another process holds the write lock
    with pytest.raises(StoreUnavailable, match="locked"):
        store.put_online("g", [OnlineFeatures("e", {"x": 1.0}, 0)])
    retries = []
    threading.Timer(0.3, other.rollback).start()
    retrying(lambda: store.put_online("g", [OnlineFeatures("e", {"x": 1.0}, 0)]),
             attempts=100, on_retry=lambda n, e, d: retries.append(n))
    assert retries and store.get_online("g", ["e"])["e"].features == {"x": 1.0}


def test_a_relative_path_lives_in_the_data_dir_and_an_absolute_one_anywhere(tmp_path):
    with open_store(StoreSettings(sqlite=SqliteSettings(path="sub/feat.db")), tmp_path / "data") as store:
        assert store.path == tmp_path / "data" / "sub" / "feat.db"
    with open_store(StoreSettings(sqlite=SqliteSettings(path=str(tmp_path / "abs.db"))), tmp_path / "data") as store:
        assert store.path == tmp_path / "abs.db"


def test_a_feedback_write_and_a_batch_are_one_transaction_each(tmp_path):
    from flywheel.feature_store import FeedbackRecord, PredictionRecord
    store = open_store(StoreSettings(), tmp_path)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    records = [FeedbackRecord(f"r{i}", "e", "m", "v1", event_time=i, predicted_at=i, labelled_at=i, true_label="a")
               for i in range(50)]
    store.put_feedback(records)
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert sum(s.startswith("INSERT OR REPLACE INTO feedback_by_time_shard") for s in statements) == 50
    statements.clear()
    with store.batch():
        store.put_predictions([PredictionRecord("p", "e", "m", "v1", 0, 0)], ttl_s=60)
        store.put_feedback(records)
        store.put_predictions([PredictionRecord("q", "e", "m", "v1", 0, 0)], ttl_s=60)
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
