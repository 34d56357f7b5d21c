"""Topic -> topic replay against the real embedded broker: exact time ranges, dry runs, and
resumes after real interruptions that send every record once in total."""
import collections
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from flywheel.streams.replay import Checkpoints, ReplayOptions, RunMismatch, TimeRange
from flywheel.streams.replay.headers import ORIGIN, REPLAY
from flywheel.streams.replay.topic import topic_replay

from flywheel.cli import main
from tests.replay_helpers import create, header, read_all, write_history

COUNT = 800


@pytest.fixture
def history(kafka):
    """800 records over 4 partitions, 10 ms apart, ending a few seconds ago; and a target topic."""
    source, target = f"{kafka.topic_prefix}src", f"{kafka.topic_prefix}dst"
    create(kafka, source, target)
    base = int(time.time() * 1000) - 60_000
    records = write_history(kafka, source, COUNT, base)
    return source, target, base, records


def inside(records, window):
    return [r for r in records if r["timestamp"] in window]


def test_a_time_range_replays_exactly_its_records_on_every_partition_once(kafka, data_dir, history):
    source, target, base, records = history
    window = TimeRange(base + 1_000, base + 6_000)  # records 100..599
    report = topic_replay(kafka, Checkpoints.in_data_dir(data_dir), "r1", source, target, window).run()

    out = read_all(kafka, target)
    expected = inside(records, window)
    assert len(expected) == 500
    assert sorted((m.value(), m.key(), m.partition(), m.timestamp()[1]) for m in out) == \
        sorted((r["value"], r["key"], r["partition"], r["timestamp"]) for r in expected)
    for m in out:  # original headers kept, replay marks added
        number = int(m.value()[1:])
        assert header(m, "trace") == f"t{number}".encode()
        assert header(m, REPLAY) == b"r1"
        assert header(m, ORIGIN) == f"{source}/{m.partition()}/{number // 4}".encode()
    assert report.status == "finished"
    assert {p: c["sent"] for p, c in report.counts.items()} == {0: 125, 1: 125, 2: 125, 3: 125}


def test_dry_run_counts_per_partition_and_writes_nothing(kafka, data_dir, history):
    source, target, base, records = history
    window = TimeRange(base + 2_000, base + 2_400)  # records 200..239
    checkpoints = Checkpoints.in_data_dir(data_dir)
    report = topic_replay(kafka, checkpoints, "dry", source, target, window, ReplayOptions(dry_run=True)).run()
    assert report.status == "dry-run"
    assert {p: c["sent"] for p, c in report.counts.items()} == {0: 10, 1: 10, 2: 10, 3: 10}
    assert read_all(kafka, target, idle=0.6) == []
    assert checkpoints.load("dry") is None  # no checkpoint either


def test_replay_into_its_own_topic_stops_at_the_end_and_skips_earlier_replays(kafka, data_dir, history):
    source, _, base, records = history
    checkpoints = Checkpoints.in_data_dir(data_dir)
    first = topic_replay(kafka, checkpoints, "self-1", source, source, TimeRange(base, base + 1_000)).run()
    assert first.totals() == {"sent": 100}
    # A second run over everything, replays included, sends only the originals of its range.
    second = topic_replay(kafka, checkpoints, "self-2", source, source,
                          TimeRange(base, int(time.time() * 1000))).run()
    assert second.totals() == {"sent": COUNT, "skipped_replayed": 100}
    values = collections.Counter(m.value() for m in read_all(kafka, source))
    assert sum(values.values()) == COUNT + 100 + COUNT
    assert all(values[f"v{i}".encode()] == (3 if i < 100 else 2) for i in range(COUNT))


def test_a_finished_run_sends_nothing_again_and_a_reused_id_must_match(kafka, data_dir, history):
    source, target, base, _ = history
    checkpoints = Checkpoints.in_data_dir(data_dir)
    window = TimeRange(base, base + 500)
    topic_replay(kafka, checkpoints, "once", source, target, window).run()
    again = topic_replay(kafka, checkpoints, "once", source, target, window).run()
    assert again.status == "finished" and again.totals() == {"sent": 50}
    assert len(read_all(kafka, target)) == 50
    with pytest.raises(RunMismatch, match="run once exists with different parameters"):
        topic_replay(kafka, checkpoints, "once", source, target, TimeRange(base, base + 600)).run()


class CrashAfterCommit(Checkpoints):
    """Dies in the window between a committed Kafka transaction and its checkpoint."""

    def __init__(self, path, survive: int):
        super().__init__(path)
        self.survive = survive

    def save(self, run_id, progress):
        if self.survive == 0:
            raise SystemExit("killed between commit and checkpoint")
        self.survive -= 1
        super().save(run_id, progress)


def test_a_crash_between_commit_and_checkpoint_does_not_duplicate(kafka, data_dir, history):
    source, target, base, records = history
    window = TimeRange(base, base + 8_000)  # 800 records
    crashing = CrashAfterCommit(data_dir / "replay.sqlite", survive=2)
    with pytest.raises(SystemExit):
        topic_replay(kafka, crashing, "crash", source, target, window, ReplayOptions(batch_size=100)).run()
    crashing.close()
    resumed = topic_replay(kafka, Checkpoints.in_data_dir(data_dir), "crash", source, target, window).run()
    assert resumed.status == "finished"
    assert resumed.recovered > 0  # the third batch was committed but not checkpointed
    origins = collections.Counter(header(m, ORIGIN) for m in read_all(kafka, target))
    assert len(origins) == COUNT and set(origins.values()) == {1}
    assert resumed.totals() == {"sent": COUNT}


def test_a_killed_replay_resumed_with_its_run_id_sends_each_record_once(kafka, data_dir, history):
    source, target, base, records = history
    start, end = base, base + 8_000
    command = [sys.executable, "-m", "flywheel", "--bootstrap", kafka.bootstrap_servers, "--data-dir",
               str(data_dir), "replay", "topic", "-t", source, "--to-topic", target, "--from", str(start),
               "--to", str(end), "--run-id", "killed", "--rate", "400", "--batch-size", "100"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = Checkpoints.in_data_dir(data_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it for real once some batches are checkpointed
        run = checkpoints.load("killed")
        if run is not None and run.totals().get("sent", 0) >= 200:
            break
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    interrupted = checkpoints.load("killed")
    assert interrupted.status == "running" and 200 <= interrupted.totals()["sent"] < COUNT

    resumed = topic_replay(kafka, checkpoints, "killed", source, target, TimeRange(start, end)).run()
    assert resumed.status == "finished" and resumed.totals() == {"sent": COUNT}
    origins = collections.Counter(header(m, ORIGIN) for m in read_all(kafka, target))
    assert len(origins) == COUNT and set(origins.values()) == {1}


def test_cli_limit_pauses_and_the_same_run_id_finishes(kafka, data_dir, history, capsys):
    source, target, base, _ = history
    common = ["--bootstrap", kafka.bootstrap_servers, "--data-dir", str(data_dir), "replay", "topic",
              "-t", source, "--to-topic", target, "--from", str(base), "--to", str(base + 3_000),
              "--run-id", "cli", "--json"]
    assert main(common + ["--limit", "120", "--batch-size", "50"]) == 0
    assert main(common) == 0
    assert main(["--data-dir", str(data_dir), "replay", "runs", "--json"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    first, second, runs = (json.loads(line) for line in lines)
    assert first["status"] == "paused" and first["totals"] == {"sent": 120}
    assert second["status"] == "finished" and second["totals"] == {"sent": 300}
    assert runs["run_id"] == "cli" and runs["status"] == "finished" and runs["remaining_offsets"] == 0
    assert len(read_all(kafka, target)) == 300
