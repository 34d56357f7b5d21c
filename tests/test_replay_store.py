"""The feedback store as a replay source: a model's historical requests (and ground truth) back
to Kafka, one per request, resumable without duplicates."""
import collections
import dataclasses
import json

import pytest
from flywheel.feature_store import FeedbackRecord, StoreSettings, open_store
from flywheel.processors.backtest.history import store_replay
from flywheel.processors.models.store import ArtifactStore
from flywheel.schemas import AvroSerde
from flywheel.streams.replay import Checkpoints, ReplayOptions
from flywheel.streams.replay.headers import ORIGIN, REPLAY

from flywheel.cli import main
from tests.replay_helpers import header, read_all
from tests.test_replay_topic import CrashAfterCommit
from tests.test_worker_support import small_model

T0 = 1_700_000_000_000
START, END = T0, T0 + 100_000


@pytest.fixture
def store(data_dir):
    """120 requests in range answered by v1 (every third also by shadow v2), 6 of them replays,
    and 5 requests outside the range."""
    s = open_store(StoreSettings(), data_dir)
    rows = []
    for i in range(125):
        event_time = T0 + i * 700 if i < 120 else END + i
        for version in ("v1", "v2") if i % 3 == 0 else ("v1",):
            rows.append(FeedbackRecord(
                request_id=f"r{i:03d}", entity_id=f"e{i % 7}", model="m", model_version=version,
                event_time=event_time, predicted_at=event_time + 3, labelled_at=event_time + 50,
                numeric={"x": float(i)}, categorical={"c": "ab"[i % 2]}, predicted_label="yes",
                true_label="no" if i % 4 else "yes", flags=["replay"] if i % 20 == 1 else []))
    s.put_feedback(rows)
    yield s
    s.close()


def test_store_history_replays_each_request_once_across_an_interruption(kafka, registry, make_topics, data_dir, store):
    catalog = make_topics("m")
    expected = [f"r{i:03d}" for i in range(120) if i % 20 != 1]

    def replay(checkpoints, **options):
        return store_replay(kafka, registry, checkpoints, store, "hist", "m", START, END, labels=True,
                            options=ReplayOptions(batch_size=25, **options)).run()

    checkpoints = Checkpoints.in_data_dir(data_dir)
    dry = replay(checkpoints, dry_run=True)
    assert dry.totals() == {"sent": len(expected)}
    paused = replay(checkpoints, limit=40)
    assert paused.status == "paused" and paused.totals() == {"sent": 40}
    crashing = CrashAfterCommit(data_dir / "replay.sqlite", survive=1)
    with pytest.raises(SystemExit):
        replay(crashing)
    crashing.close()
    done = replay(Checkpoints.in_data_dir(data_dir))
    assert done.status == "finished" and done.recovered == 25
    assert done.totals() == {"sent": len(expected)}

    requests = AvroSerde(registry, "InferenceRequest")
    sent = read_all(kafka, catalog.requests("m"))
    decoded = [requests.decode(m.value()) for m in sent]
    assert sorted(r["request_id"] for r in decoded) == expected  # each once, none outside or replayed
    assert all(header(m, REPLAY) == b"hist" for m in sent)
    assert all(header(m, ORIGIN) == f"store/m/{r['request_id']}".encode() for m, r in zip(sent, decoded))
    first = next(r for r in decoded if r["request_id"] == "r003")
    assert (first["entity_id"], first["event_time"], first["numeric"], first["categorical"]) == \
        ("e3", T0 + 3 * 700, {"x": 3.0}, {"c": "b"})
    truth = AvroSerde(registry, "GroundTruth")
    labels = collections.Counter((g["request_id"], g["label"]) for g in
                                 (truth.decode(m.value()) for m in read_all(kafka, catalog.labels)))
    assert sorted(labels) == [(r, "yes" if int(r[1:]) % 4 == 0 else "no") for r in expected]
    assert set(labels.values()) == {1}


def test_cli_store_dry_run(kafka, make_topics, data_dir, store, capsys):
    make_topics("m")
    onnx, manifest, _ = small_model()          # the CLI replays only a registered model's history
    ArtifactStore(data_dir).save(onnx, dataclasses.replace(manifest, model="m"))
    code = main(["--bootstrap", kafka.bootstrap_servers, "--topic-prefix", kafka.topic_prefix, "--data-dir",
                 str(data_dir), "replay", "store", "-m", "m", "--from", str(START), "--to", str(END),
                 "--version", "v2", "--dry-run", "--json"])
    assert code == 0
    # v2 answered every third request (40), two of which came from replays
    assert json.loads(capsys.readouterr().out)["totals"] == {"sent": 38}
