"""`flywheel export` and `flywheel models show`, from the store and the data dir alone (no broker):
a model's windows, feedback, retrains and events over a time range as JSON lines; a version's
manifest and lineage."""
import json
import time

from flywheel.feature_store import FeedbackRecord, RetrainRecord, StoreSettings, WindowMetrics, open_store
from flywheel.processors.models.history import EventLog

from flywheel.cli import main

NOW = int(time.time() * 1000)
HOUR = 3_600_000


def test_export_writes_each_kind_in_the_range_as_json_lines(registered, data_dir, tmp_path, capsys):
    for at, kind in ((NOW - 3 * HOUR, "REGISTERED"), (NOW - HOUR, "PROMOTED")):
        EventLog(data_dir).append({"model": "m", "kind": kind, "version": "v1", "at": at, "reason": "r"})
    with open_store(StoreSettings(), data_dir) as store:
        store.put_metrics([WindowMetrics("m", "v1", t, t + 60_000, {"drift_flagged": 0.0})
                           for t in (NOW - 3 * HOUR, NOW - HOUR)])
        store.put_feedback([FeedbackRecord(f"r{i}", "e", "m", "v1", NOW - HOUR + i, NOW - HOUR + i, NOW - HOUR + i,
                                           {"x0": 1.0}, {}, "a", None, {}, 0.9, "b") for i in range(3)])
        store.put_retrain(RetrainRecord("m", "q1", "done", NOW - HOUR, NOW - HOUR, base_version="v1",
                                        reasons=["error_change"]))
    flags = ["--data-dir", str(data_dir), "export", "-m", "m", "--since", "2h"]
    assert main(flags) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [line["record"] for line in lines]
    # the window and event of three hours ago are outside the range
    assert kinds == ["window", "feedback", "feedback", "feedback", "retrain", "event"]
    assert lines[0]["window_start"] == NOW - HOUR and lines[4]["reasons"] == ["error_change"]
    assert lines[5]["kind"] == "PROMOTED" and lines[5]["at"] == NOW - HOUR
    assert main([*flags, "--kind", "retrain", "--out", str(tmp_path / "r.jsonl")]) == 0
    assert "wrote 1 records of m" in capsys.readouterr().err
    assert json.loads((tmp_path / "r.jsonl").read_text())["retrain_id"] == "q1"
    assert main(["--data-dir", str(data_dir), "export", "-m", "nosuch"]) == 1
    assert "model 'nosuch' is not registered (registered: m)" in capsys.readouterr().err


def test_models_show_says_a_version_without_lineage_has_none_and_an_unknown_one_in_one_line(
        registered, data_dir, capsys):
    assert main(["--data-dir", str(data_dir), "models", "show", "m", "v1"]) == 0
    shown = capsys.readouterr().err
    assert "m v1:" in shown and "lineage: none recorded (imported or registered by hand)" in shown
    assert main(["--data-dir", str(data_dir), "models", "show", "m", "v9", "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert "m/v9: not registered" in err and len(err.splitlines()) == 1
