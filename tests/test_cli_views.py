"""What the CLI draws, piped or in a small terminal: `replay runs` keeps the run id whole; the
live view fits the terminal's rows and keeps the timeline's latest events."""
import io
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.models import EventLog
from flywheel.streams.broker import free_port
from flywheel.streams.replay.checkpoint import Checkpoints
from flywheel.streams.replay.ranges import PartitionRange
from rich.console import Console

from flywheel.cli import main
from flywheel.stack import ProcessSpec, StackState
from flywheel.views import terminal
from flywheel.views.live import StatusSession
from flywheel.views.scrape import figures, scrape


def test_replay_runs_keeps_the_run_id_whole_when_piped(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    run_id = "replay-20261201-142233-ab12cd34ef56"
    checkpoints = Checkpoints.in_data_dir(data_dir)
    checkpoints.start(run_id, "topic", {"source": "churn.requests", "start": 0, "end": 1_000},
                      [PartitionRange("churn.requests", 0, 0, 10)])
    checkpoints.close()
    assert main(["--data-dir", str(data_dir), "replay", "runs"]) == 0
    assert run_id in capsys.readouterr().err


@pytest.mark.parametrize("width, height", [(100, 24), (200, 50), (80, 30)])
def test_the_live_view_fits_the_terminal_and_keeps_the_latest_events(tmp_path, width, height):
    from tests.test_report_html import fill_story
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    fill_story(data_dir)
    names = ("joiner", "monitor", "retrainer", "rollout", "trigger", "worker", "simulator")
    stack = StackState("127.0.0.1:1", str(data_dir), time.time() - 65,
                       [ProcessSpec(name, [name], free_port(), os.getpid()) for name in names])
    with open_store(StoreSettings(), data_dir) as store:
        frame = StatusSession(data_dir, store, stack, 4 * 3_600_000).frame()
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True)
    assert terminal.rows(terminal.render(frame), width) > height         # the full view would be cut
    fitted = terminal.fitted(frame, console)
    assert terminal.rows(fitted, width) <= height
    text = _text(fitted, width)
    latest = max((e for m in frame.models for e in m.events), key=lambda e: e.at)
    last_line = [line for line in text.splitlines() if line.strip()][-1]
    assert _clock(latest.at) in last_line and "promoted" in last_line  # the newest event, on the last row
    for name in names:
        assert name in text
    assert "live" in text and "retired" in text                       # both versions' rows


def test_at_80x24_the_live_view_keeps_model_version_role_metric_drift_and_the_timeline(tmp_path):
    """The columns that matter stay whole at 80 columns, a canary waiting for a person among them;
    the sparkline and counts go first."""
    from tests.test_report_html import MINUTE, fill_story
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    story = fill_story(data_dir)
    log = EventLog(data_dir)
    last = log.events("churn")[-1]
    waits = {"since": story.promoted_at + 20 * MINUTE, "reason": "canary loss 0.08 < live 0.11", "evidence": {}}
    for kind, at, awaiting in (("CANARY", story.promoted_at + 10 * MINUTE, None),
                               ("AWAITING_APPROVAL", waits["since"], waits)):
        log.append({**last, "kind": kind, "version": "1", "at": at, "reason": "", "canary_version": "1",
                    "canary_share": 0.1, "awaiting_approval": awaiting})
    stack = StackState("127.0.0.1:1", str(data_dir), time.time() - 65,
                       [ProcessSpec(name, [name], free_port(), os.getpid()) for name in ("worker", "rollout")])
    with open_store(StoreSettings(), data_dir) as store:
        frame = StatusSession(data_dir, store, stack, 4 * 3_600_000).frame()
    console = Console(width=80, height=24, file=io.StringIO(), force_terminal=True)
    fitted = terminal.fitted(frame, console)
    assert terminal.rows(fitted, 80) <= 24
    lines = _text(fitted, 80).splitlines()
    assert "up 1m0" in lines[0] and " UTC" in lines[0] and lines[1].startswith("processes")  # one header row
    header = next(line.split() for line in lines if line.split()[:3] == ["model", "version", "role"])
    assert {"model", "version", "role", "metric", "drift"} <= set(header)
    rows = {cells[1]: dict(zip(header, cells)) for cells in (line.split() for line in lines)
            if len(cells) == len(header) and cells[0] == "churn"}
    assert (rows["1"]["role"], rows["2"]["role"]) == ("awaiting", "live")
    assert rows["1"]["metric"] == rows["2"]["metric"] == "accuracy" and rows["2"]["drift"] == "—"
    assert any(line.split()[:2] == ["time", "model"] and "event" in line for line in lines)
    newest = [line for line in lines if line.strip()][-1]
    assert newest.startswith(_clock(waits["since"])) and "awaiting approval" in newest


def _text(renderable, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def test_the_simulator_reports_the_rate_it_sends_at(kafka, data_dir, make_topics):
    make_topics("churn")
    port = free_port()
    env = {**os.environ, "FLYWHEEL_BOOTSTRAP": kafka.bootstrap, "FLYWHEEL_TOPIC_PREFIX": kafka.topic_prefix,
           "FLYWHEEL_DATA_DIR": str(data_dir), "FLYWHEEL_METRICS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "flywheel", "simulate", "--rate", "40", "--label-delay", "0.5"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    spec = [ProcessSpec("simulator", ["simulate"], port, proc.pid)]
    try:
        deadline = time.monotonic() + 60
        while scrape(spec).down and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.3)
        before = scrape(spec)
        time.sleep(2.0)
        live = figures(spec, before, scrape(spec))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    (simulator,) = live.processes
    assert simulator.state == "up" and simulator.records_in_per_s == 0
    assert 20 < simulator.records_out_per_s < 150, simulator      # 40 requests/s plus their labels
    assert terminal._records(simulator).endswith(" out")
