"""`flywheel features ingest` from JSON lines, CSV and a topic, and `flywheel features get`."""
import json

from confluent_kafka import Producer
from flywheel.feature_store import StoreSettings, open_store
from flywheel.streams.clients import make_admin
from flywheel.streams.topics import TopicSpec, ensure_topics

from flywheel.cli import main


def stored(data_dir, group, ids):
    with open_store(StoreSettings(), data_dir) as store:
        return {e: r.features for e, r in store.get_online(group, ids).items()}


def test_jsonl_rows_load_and_reloading_changes_nothing(tmp_path, capsys):
    rows = tmp_path / "profile.jsonl"
    rows.write_text('{"entity_id": "u1", "age": 41, "city": "Oslo", "score": null}\n\n'
                    '{"entity_id": "u2", "age": 22.5}\n')
    for _ in range(2):
        assert main(["--data-dir", str(tmp_path), "features", "ingest", "profile", "-f", str(rows)]) == 0
    assert stored(tmp_path, "profile", ["u1", "u2", "u3"]) == \
        {"u1": {"age": 41.0, "city": "Oslo", "score": None}, "u2": {"age": 22.5}}
    capsys.readouterr()
    assert main(["--data-dir", str(tmp_path), "features", "get", "profile", "u2", "nobody"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["features"] == {"age": 22.5}
    assert "not in 'profile': nobody" in out.err


def test_csv_rows_with_custom_columns_and_ttl(tmp_path):
    rows = tmp_path / "risk.csv"
    rows.write_text("customer,ts,band,limit\nc1,1700000000000,high,2500\nc2,1700000000001,,-1.5\n")
    assert main(["--data-dir", str(tmp_path), "features", "ingest", "risk", "-f", str(rows),
                 "--entity-column", "customer", "--time-column", "ts", "--ttl", "3600"]) == 0
    with open_store(StoreSettings(), tmp_path) as store:
        got = store.get_online("risk", ["c1", "c2"])
    assert got["c1"].features == {"band": "high", "limit": 2500.0} and got["c1"].updated_at == 1700000000000
    assert got["c2"].features == {"band": None, "limit": -1.5}


def test_a_bad_line_stops_the_load_with_its_line_number(tmp_path, capsys):
    rows = tmp_path / "bad.jsonl"
    rows.write_text('{"entity_id": "u1", "age": 1}\n{"age": 2}\n')
    assert main(["--data-dir", str(tmp_path), "features", "ingest", "g", "-f", str(rows)]) == 1
    assert "line 2: no 'entity_id' field" in capsys.readouterr().err


def test_topic_rows_load_with_the_key_as_entity_and_bad_records_reported(tmp_path, kafka, capsys):
    topic = f"{kafka.topic_prefix}features.profile"
    ensure_topics(make_admin(kafka), [TopicSpec(topic, 2, 1)])
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topic, key=b"u1", value=json.dumps({"age": 30}).encode())
    producer.produce(topic, key=b"ignored", value=json.dumps({"entity_id": "u2", "city": "Rome"}).encode())
    producer.produce(topic, key=b"u3", value=b"not json")
    producer.flush(10)
    assert main(["--data-dir", str(tmp_path), "--bootstrap", kafka.bootstrap, "features", "ingest", "profile",
                 "-t", topic, "--idle-seconds", "1.5"]) == 1
    assert stored(tmp_path, "profile", ["u1", "u2", "u3"]) == {"u1": {"age": 30.0}, "u2": {"city": "Rome"}}
    err = capsys.readouterr().err
    assert "loaded 2 row(s)" in err and "skipped 1 bad record(s)" in err
