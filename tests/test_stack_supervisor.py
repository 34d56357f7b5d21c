"""`flywheel up` as a supervisor: a killed processor comes back, a crash loop stops the stack
with one line naming the processor and its last error, one stack per data dir, and every port
checked before anything starts. Real subprocesses, a real embedded broker."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from flywheel.streams.broker import free_port

from tests.ports import free_port_block


def _env(data_dir, **extra):
    env = {**os.environ, "FLYWHEEL_DATA_DIR": str(data_dir), **extra}
    env.pop("FLYWHEEL_BOOTSTRAP", None)
    return env


def _up(env, broker_port, metrics_port, *flags):
    return subprocess.Popen([sys.executable, "-m", "flywheel", "up", "--broker-port", str(broker_port),
                             "--metrics-port", str(metrics_port), *flags],
                            env=env, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout=90.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        assert proc is None or proc.poll() is None, proc.stderr.read()
        time.sleep(0.3)
    raise AssertionError("timed out")


def _state(data_dir):
    try:
        return json.loads((data_dir / "stack.json").read_text())
    except FileNotFoundError:
        return None


def test_a_killed_processor_comes_back_and_a_second_stack_is_refused(tmp_path):
    data_dir = tmp_path / "d"
    env = _env(data_dir, FLYWHEEL_SUPERVISOR_BACKOFF_SECONDS="0.5")
    base = free_port_block(12)
    proc = _up(env, free_port(), base)
    try:
        first = _wait_for(lambda: _state(data_dir), proc=proc)
        joiner = next(p for p in first["processes"] if p["name"] == "joiner")
        os.kill(joiner["pid"], signal.SIGKILL)

        def restarted():
            s = _state(data_dir)
            j = next(p for p in s["processes"] if p["name"] == "joiner")
            return s if j["restarts"] == 1 and j["pid"] != joiner["pid"] else None
        after = _wait_for(restarted, proc=proc)
        new_pid = next(p for p in after["processes"] if p["name"] == "joiner")["pid"]
        os.kill(new_pid, 0)                                   # the new one runs

        with urllib.request.urlopen(f"http://127.0.0.1:{base}/metrics", timeout=5) as r:
            assert 'flywheel_process_restarts_total{process="joiner"} 1.0' in r.read().decode()
        status = subprocess.run([sys.executable, "-m", "flywheel", "status", "--once", "--interval", "0.2"],
                                env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=90)
        row = next(line.replace("│", " ").split() for line in status.stdout.splitlines()
                   if line.replace("│", " ").split()[:1] == ["joiner"])
        assert row[1:4] == [str(new_pid), "up", "1"] or row[1:4] == [str(new_pid), "no", "metrics"], status.stdout

        # A second stack on the same data dir (other ports): one line, and the first one untouched.
        before = (data_dir / "stack.json").read_text()
        second = subprocess.run([sys.executable, "-m", "flywheel", "up", "--broker-port", str(free_port()),
                                 "--metrics-port", str(free_port_block(12)), "--for", "5"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip().count("\n") == 0 and "Traceback" not in second.stderr
        assert "already running on data dir" in second.stderr and str(os.getpid()) not in second.stderr
        assert (data_dir / "stack.json").read_text() == before
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "joiner" in err and "restarted" in err
    assert not (data_dir / "stack.json").exists()


def test_a_crash_loop_stops_the_stack_with_the_processors_last_error(tmp_path):
    data_dir = tmp_path / "d"
    # Settings are checked before the stack starts, so a bad one cannot crash only the monitor; a
    # trainer plugin that refuses to import where the stack names the process the monitor does.
    plugin = tmp_path / "refusing.py"
    plugin.write_text('import os\nif "-monitor" in os.environ.get("FLYWHEEL_INSTANCE_ID", ""):\n'
                      '    raise ImportError("refused in the monitor")\ntrain = print\n')
    config = tmp_path / "f.toml"                # relative: next to the file, wherever a process starts
    config.write_text('[retrainer]\ntrainer = "sklearn:refusing.py:train"\n')
    env = _env(data_dir, FLYWHEEL_SUPERVISOR_BACKOFF_SECONDS="0.2", FLYWHEEL_SUPERVISOR_CRASH_LOOP_EXITS="3",
               FLYWHEEL_CONFIG=str(config))
    proc = _up(env, free_port(), free_port_block(12), "--for", "120")
    _, err = proc.communicate(timeout=150)
    assert proc.returncode == 1
    reason = next(line for line in err.splitlines() if "stopping the stack" in line)
    assert reason.startswith("flywheel up: monitor exited 3 times")
    assert "[retrainer] trainer: trainer sklearn:" in reason and "refused in the monitor" in reason
    assert "Traceback" not in err
    assert not (data_dir / "stack.json").exists()


def test_a_busy_metrics_port_is_reported_before_anything_starts(tmp_path):
    data_dir = tmp_path / "d"
    base = free_port_block(12)
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 2))
        s.listen()
        done = subprocess.run([sys.executable, "-m", "flywheel", "up", "--broker-port", str(free_port()),
                               "--metrics-port", str(base)], env=_env(data_dir), capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 1
    assert f"port {base + 2} is in use" in done.stderr and "metrics" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not list(data_dir.glob("*.log")) and not (data_dir / "stack.json").exists()
