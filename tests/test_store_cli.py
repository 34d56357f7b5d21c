"""`flywheel store migrate` and `flywheel store stats` on the embedded store."""
import sqlite3

from flywheel.feature_store.schema import migrations, tables

from flywheel.cli import main


def test_migrate_creates_every_table_and_runs_twice(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["--data-dir", str(data), "store", "migrate"]) == 0
    assert main(["--data-dir", str(data), "store", "migrate"]) == 0
    db = sqlite3.connect(data / "store.sqlite")
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == set(tables())
    assert db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrations())
    assert capsys.readouterr().err.count("001_store.cql") == 2


def test_stats_counts_rows_and_purges_on_request(tmp_path, capsys):
    data = tmp_path / "data"
    rows = tmp_path / "f.jsonl"
    rows.write_text('{"entity_id": "a", "x": 1}\n{"entity_id": "b", "x": 2}\n')
    assert main(["--data-dir", str(data), "features", "ingest", "g", "-f", str(rows)]) == 0
    assert main(["--data-dir", str(data), "store", "stats", "--purge"]) == 0
    out = capsys.readouterr().err
    assert "purged 0 expired row(s)" in out
    assert [line for line in out.splitlines() if "online_features" in line][0].split("│")[2].strip() == "2"


def test_an_unknown_backend_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_STORE_BACKEND", "mongo")
    assert main(["--data-dir", str(tmp_path), "store", "migrate"]) == 1
    err = capsys.readouterr().err      # refused up front, with the configuration, before any store opens
    assert err == "flywheel store: FLYWHEEL_STORE_BACKEND = 'mongo': must be one of 'sqlite', 'cassandra'\n"
