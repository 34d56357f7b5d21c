"""`flywheel status`: one frame against a real running embedded stack (every process answering,
a worker's real predictions counted), the figures from scrapes of real Prometheus endpoints, and
the store-backed parts of a frame."""
import dataclasses
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flywheel.feature_store import StoreSettings, open_store
from flywheel.streams.broker import free_port
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from flywheel.cli import main
from flywheel.stack import ProcessSpec, StackState
from flywheel.views import terminal
from flywheel.views.live import StatusSession
from flywheel.views.scrape import figures, quantile, scrape
from tests.ports import stack_ports


def _env(data_dir: Path) -> dict:
    env = {**os.environ, "FLYWHEEL_DATA_DIR": str(data_dir)}
    env.pop("FLYWHEEL_BOOTSTRAP", None)
    return env


@pytest.fixture
def demo_stack(tmp_path):
    """`flywheel up --demo` in a subprocess on free ports and its own data dir, until the test ends."""
    data_dir = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-m", "flywheel", "up", "--demo", "--speed", "5", "--rate", "50",
                             *stack_ports().up_args()],
                            env=_env(data_dir), stderr=subprocess.PIPE, text=True)
    try:
        state_file = data_dir / "stack.json"
        deadline = time.monotonic() + 90
        while not state_file.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        yield data_dir, proc
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def _logs(data_dir: Path) -> str:
    return "".join(f"\n--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:])
                   for log in sorted(data_dir.glob("*.log")))


def _status_once(data_dir: Path, capsys) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data_dir), "status", "--once", "--interval", "1"])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_once_shows_the_processes_and_live_numbers_of_a_running_demo(demo_stack, capsys, monkeypatch):
    data_dir, proc = demo_stack
    monkeypatch.setenv("COLUMNS", "160")          # wide enough that no row wraps
    # stack.json names the processes once they are spawned; they serve metrics a moment later, and
    # the worker predicts once the demo's first model is registered and traffic flows.
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read() + _logs(data_dir)
        state = json.loads((data_dir / "stack.json").read_text())
        specs = [ProcessSpec(**p) for p in state["processes"]]
        scraped = scrape(specs)
        if sum(s.value for s in scraped.named("flywheel_predictions_total")) > 0 and \
                not set(scraped.down) - {"simulator"} or time.monotonic() > deadline:
            break
        time.sleep(1)
    code, out, err = _status_once(data_dir, capsys)
    assert code == 0, err
    rows = {line.split()[1]: line.split()[1:] for line in out.splitlines() if len(line.split()) > 3}
    names = {p.name for p in specs}
    assert {"worker", "joiner", "monitor", "trigger", "retrainer", "simulator"} <= names
    for spec in specs:
        row = rows[spec.name]
        assert row[1] == str(spec.pid) and f":{spec.metrics_port}" in row, row
        assert row[2] == "up" or spec.name == "simulator", row
        assert row[3] == "0" or spec.name == "simulator", row              # restarts
    assert float(rows["worker"][4]) > 0                                    # records in/s
    throughput = out[out.index("throughput"):out.index("models:")]
    (churn,) = [line.split()[1:8] for line in throughput.splitlines() if "churn" in line]
    model, requests_in, predictions_out, p50, p50_unit, p99, p99_unit = churn
    assert float(requests_in.replace(",", "")) > 0 and float(predictions_out.replace(",", "")) > 0
    assert p50_unit == p99_unit == "ms" and 0 < float(p50.replace(",", "")) <= float(p99.replace(",", ""))
    assert state["bootstrap"] in out
    for panel in ("processes", "throughput", "models", "most drifted features", "timeline", "registered"):
        assert panel in out


def test_status_without_a_stack_is_a_one_line_error(tmp_path, capsys):
    code, _, err = _status_once(tmp_path / "nothing", capsys)
    assert code == 1 and "no stack is running" in err


def test_figures_are_rates_and_percentiles_between_two_real_scrapes():
    registry = CollectorRegistry()
    records = Counter("flywheel_records_in", "", ["processor", "model"], registry=registry)
    predictions = Counter("flywheel_predictions", "", ["model", "version", "role"], registry=registry)
    latency = Histogram("flywheel_e2e_latency_seconds", "", ["model"], registry=registry,
                        buckets=(0.01, 0.02, 0.05, 0.1, 1.0))
    lag = Gauge("flywheel_consumer_lag", "", ["processor", "topic", "partition"], registry=registry)
    dead = Counter("flywheel_dead_letters", "", ["processor", "reason"], registry=registry)
    info = Gauge("flywheel_model_version_info", "", ["model", "version", "role"], registry=registry)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                text=True).stdout.strip()
        procs = [ProcessSpec("worker", ["worker"], port, os.getpid()),
                 ProcessSpec("silent", ["x"], free_port(), os.getpid()),
                 ProcessSpec("gone", ["x"], free_port(), int(exited))]
        for _ in range(50):
            latency.labels("churn").observe(0.5)            # old, slow traffic: outside the rates
        before = scrape(procs)
        records.labels("worker", "churn").inc(200)
        predictions.labels("churn", "1", "live").inc(150)
        predictions.labels("churn", "2", "canary").inc(50)
        predictions.labels("churn", "0", "live").inc(0)            # served once, retired since
        info.labels("churn", "1", "live").set(1)
        info.labels("churn", "2", "canary").set(1)
        info.labels("churn", "0", "live").set(0)
        dead.labels("worker", "missing_feature").inc(4)
        lag.labels("worker", "churn.requests", "0").set(17)
        for i in range(100):
            latency.labels("churn").observe(0.012 if i < 90 else 0.08)
        time.sleep(0.5)
        after = scrape(procs)
    finally:
        server.shutdown()
    f = figures(procs, before, after)
    per_s = 1 / f.seconds
    assert f.requests_in_per_s["churn"] == pytest.approx(200 * per_s)
    assert f.predictions_per_s["churn"] == pytest.approx(200 * per_s)
    assert {(v.version, v.role, round(v.predictions)) for v in f.versions} == {
        ("0", "", 0), ("1", "live", 150), ("2", "canary", 50)}
    worker, silent, gone = f.processes
    assert worker.state == "up" and worker.lag == 17 and worker.records_in_per_s == pytest.approx(200 * per_s)
    assert silent.state == "no metrics" and gone.state == "exited"
    assert f.dead_letters == {"missing_feature": 4}
    p = f.latency["churn"]
    assert p.observed == 100                     # only what happened between the scrapes
    assert 0.01 < p.p50 <= 0.02 and 0.05 < p.p99 <= 0.1


def test_quantile_matches_prometheus_histogram_quantile():
    cumulative = {0.1: 10.0, 0.2: 30.0, 0.5: 40.0, float("inf"): 40.0}
    assert quantile(0.5, cumulative) == pytest.approx(0.15)        # rank 20: halfway through (0.1, 0.2]
    assert quantile(0.25, cumulative) == pytest.approx(0.1)
    assert quantile(1.0, cumulative) == pytest.approx(0.5)
    assert quantile(0.99, {0.1: 0.0, float("inf"): 5.0}) == pytest.approx(0.1)   # +Inf: highest finite bound
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_a_frame_shows_the_stores_accuracy_drift_and_timeline(tmp_path):
    """The store-backed half of a frame, from the same realistic story as the report's tests."""
    from tests.test_report_html import fill_story
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    fill_story(data_dir)
    stack = StackState("127.0.0.1:1", str(data_dir), time.time() - 65, [])
    with open_store(StoreSettings(), data_dir) as store:
        frame = StatusSession(data_dir, store, stack, 4 * 3_600_000).frame()
    from rich.console import Console
    console = Console(width=160, record=True, file=open(os.devnull, "w"))
    console.print(terminal.render(frame))
    text = console.export_text()
    assert "up 1m05s" in text or "up 1m06s" in text
    rows = {cells[2]: cells for cells in (line.split() for line in text.splitlines())
            if len(cells) > 8 and cells[1] == "churn" and cells[5] == "accuracy"}
    assert rows["1"][3] == "retired" and rows["2"][3] == "live"
    assert 0.68 < float(rows["1"][6]) < 0.78 and 0.85 < float(rows["2"][6]) < 0.95   # the last windows
    v1_spark = rows["1"][7]
    assert set(v1_spark) <= set(terminal.BLOCKS) and v1_spark[0] in "▇█" and v1_spark[-1] in "▁▂▃"
    assert rows["1"][8] == "1,331"
    panel = text[text.index("most drifted features"):text.index("timeline")]
    drift = [line.split()[1:6] for line in panel.splitlines() if len(line.split()) > 6 and line.split()[1] == "churn"]
    assert len(drift) == 5 and {row[1] for row in drift} == {"2"}   # the serving version's features only
    assert all(float(row[3]) < 0.2 for row in drift)                 # its own reference: no drift
    for words in ("drift flagged", "retrain requested", "canary", "promoted", "candidate rejected"):
        assert words in text, words


def test_sparkline_scales_to_the_range():
    assert terminal.sparkline([0.0, 0.5, 1.0], 0.0, 1.0) == "▁▅█"
    assert terminal.sparkline([], 0, 1) == ""
    assert len(terminal.sparkline(list(range(100)), 0, 99)) == terminal.SPARK_WIDTH


def test_the_live_view_redraws_in_a_terminal_and_ends_when_the_stack_stops(tmp_path):
    """`flywheel status` without --once, on a pseudo-terminal: frames keep coming with fresh
    figures, and removing stack.json (what `flywheel up` does on exit) ends it cleanly."""
    import pty
    registry = CollectorRegistry()
    predictions = Counter("flywheel_predictions", "", ["model", "version", "role"], registry=registry)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    state = StackState("127.0.0.1:1", str(data_dir), time.time(),
                       [ProcessSpec("worker", ["worker"], port, os.getpid())])
    (data_dir / "stack.json").write_text(json.dumps(dataclasses.asdict(state)))
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "flywheel", "status", "--interval", "0.5"],
                            env={**_env(data_dir), "COLUMNS": "120", "LINES": "60", "TERM": "xterm"},
                            stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while len(set(re.findall(rb"up 0m\d\ds", screen))) < 3 and time.monotonic() < deadline:
            predictions.labels("churn", "v1", "live").inc(50)
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                screen += os.read(leader, 65536)
        (data_dir / "stack.json").unlink()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:          # keep reading: a full terminal would block the view
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    screen += os.read(leader, 65536)
                except OSError:                     # the view exited and closed the terminal
                    break
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=5)
    finally:
        proc.kill()
        os.close(leader)
        server.shutdown()
    text = screen.decode(errors="replace")
    assert code == 0 and len(set(re.findall(r"up 0m\d\ds", text))) >= 3      # new frames, not one redrawn
    assert "churn" in text and "the stack stopped" in text
