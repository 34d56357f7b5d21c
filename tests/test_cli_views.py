"""What the CLI draws, piped or in a small terminal: `replay runs` keeps the run id whole; the
live view fits the terminal's rows and keeps the timeline's latest events."""
from flywheel.cli import main
from streams.replay.checkpoint import Checkpoints
from streams.replay.ranges import PartitionRange


def test_replay_runs_keeps_the_run_id_whole_when_piped(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    run_id = "replay-20261201-142233-ab12cd34ef56"
    checkpoints = Checkpoints.in_data_dir(data_dir)
    checkpoints.start(run_id, "topic", {"source": "churn.requests", "start": 0, "end": 1_000},
                      [PartitionRange("churn.requests", 0, 0, 10)])
    checkpoints.close()
    assert main(["--data-dir", str(data_dir), "replay", "runs"]) == 0
    assert run_id in capsys.readouterr().err
