"""The CLI as a user meets it: JSON lines in and out, one-line errors, non-zero exits."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from flywheel.streams.broker import free_port

from flywheel.cli import main
from tests.ports import stack_ports
from tests.test_worker_support import wait_for


def _flags(kafka, data_dir):
    return ["--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix, "--data-dir", str(data_dir)]


def test_publish_then_subscribe_round_trip(kafka, data_dir, make_topics, tmp_path, capsys):
    make_topics("m")
    lines = tmp_path / "requests.jsonl"
    lines.write_text("\n".join(json.dumps({"features": {"x": i, "plan": "pro"}, "entity_id": f"e{i}"})
                               for i in range(30)) + "\n\n" + json.dumps({"x": 99.0}) + "\n")
    assert main([*_flags(kafka, data_dir), "publish", "-m", "m", "--create-topics", str(lines), "--print-ids"]) == 0
    ids = [json.loads(line)["request_id"] for line in capsys.readouterr().out.splitlines()]
    assert len(ids) == 31
    assert main([*_flags(kafka, data_dir), "subscribe", "-t", f"{kafka.topic_prefix}m.requests",
                 "--from-beginning", "-n", "31", "--timeout", "20"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(o["value"]["request_id"] for o in out) == sorted(ids)
    assert {o["value"]["numeric"]["x"] for o in out} == {float(i) for i in range(30)} | {99.0}


def test_a_bad_line_is_one_line_error_naming_the_line(kafka, data_dir, make_topics, tmp_path, capsys):
    make_topics("m")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n{"x": \n')
    assert main([*_flags(kafka, data_dir), "publish", "-m", "m", "--create-topics", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flywheel publish: line 2:") and err[0].endswith("; nothing sent")


def test_label_from_arguments_and_file(kafka, data_dir, make_topics, tmp_path, capsys):
    make_topics()
    assert main([*_flags(kafka, data_dir), "label", "r1", "spam"]) == 0
    rows = tmp_path / "labels.jsonl"
    rows.write_text('{"request_id": "r2", "label": "ham"}\n{"request_id": "r3", "value": 2.5}\n')
    assert main([*_flags(kafka, data_dir), "label", "--file", str(rows)]) == 0
    assert main([*_flags(kafka, data_dir), "subscribe", "-t", f"{kafka.topic_prefix}labels",
                 "--from-beginning", "-n", "3", "--timeout", "20"]) == 0
    got = {json.loads(line)["value"]["request_id"] for line in capsys.readouterr().out.splitlines()}
    assert got == {"r1", "r2", "r3"}
    assert main([*_flags(kafka, data_dir), "label"]) == 1
    assert "give REQUEST_ID and LABEL" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["publish", "-m", "m", "--create-topics", "/no/such/file.jsonl"], "No such file"),
    (["subscribe", "-m", "nosuchmodel", "--timeout", "1"], "is not registered"),
    (["subscribe", "-t", "x", "--from-time", "yesterday-ish"], "neither epoch milliseconds nor"),
])
def test_user_mistakes_are_one_line_and_non_zero(kafka, data_dir, make_topics, capsys, argv, message):
    make_topics()
    assert main([*_flags(kafka, data_dir), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_broken_config_file_is_a_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "flywheel.toml"
    cfg.write_text("[kafka]\nbootstrapp = 'x'\n")
    assert main(["--config", str(cfg), "topics"]) == 1
    assert "[kafka] bootstrapp is not a setting (did you mean bootstrap?)" in capsys.readouterr().err


def test_topics_lists_and_creates(kafka, data_dir, capsys):
    assert main([*_flags(kafka, data_dir), "topics", "--create", "-m", "fraud"]) == 0
    err = capsys.readouterr().err
    assert "fraud.requests" in err and "deadletter" in err and "ModelEvent" in err


def test_up_starts_and_stops_the_embedded_stack(tmp_path):
    """`flywheel up` in a real subprocess: banner, live broker, the web console, clean stop on SIGINT."""
    ports = stack_ports()
    port, registry_port = ports.broker, ports.registry
    env = {**os.environ, "FLYWHEEL_DATA_DIR": str(tmp_path / "d")}
    env.pop("FLYWHEEL_BOOTSTRAP", None)
    proc = subprocess.Popen([sys.executable, "-m", "flywheel", "up", *ports.up_args(), "--model", "demo"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        state_file = tmp_path / "d" / "stack.json"
        deadline = time.monotonic() + 60
        while not state_file.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        state = json.loads(state_file.read_text())
        assert state["bootstrap"] == f"127.0.0.1:{port}"
        listed = subprocess.run([sys.executable, "-m", "flywheel", "topics"],
                                env={**env, "FLYWHEEL_BOOTSTRAP": state["bootstrap"]},
                                capture_output=True, text=True, timeout=60)
        assert "demo.requests" in listed.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{registry_port}/subjects", timeout=10) as reply:
            assert "flywheel.Prediction" in json.load(reply)  # the embedded registry, over REST
        console = f"http://127.0.0.1:{os.environ['FLYWHEEL_CONSOLE_PORT']}/"     # a free port (conftest)
        page = wait_for(lambda: _get(console + "review"), timeout=60)
        assert "Your name" in page and "Budget" in page
        overview = _get(console)
        assert "Processes" in overview and "console" in overview        # its own row among the processes
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"127.0.0.1:{port}" in err and f"http://127.0.0.1:{registry_port}" in err and "stopped" in err
    assert "web console" in err and console in err
    assert not (tmp_path / "d" / "stack.json").exists()
    assert (tmp_path / "d" / "schemas.sqlite").exists()


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read().decode()
    except OSError:           # not listening yet
        return None


@pytest.mark.parametrize("flag, message", [
    ("--broker-port", "port {busy} is in use"),
    ("--registry-port", "port {busy} is in use (schema registry)"),
])
def test_up_on_a_busy_port_is_a_one_line_error(tmp_path, flag, message):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        env = {**os.environ, "FLYWHEEL_DATA_DIR": str(tmp_path / "d")}
        env.pop("FLYWHEEL_BOOTSTRAP", None)
        ports = {"--broker-port": str(free_port()), "--registry-port": str(free_port()), flag: str(busy)}
        done = subprocess.run([sys.executable, "-m", "flywheel", "up", *[a for kv in ports.items() for a in kv]],
                              env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert message.format(busy=busy) in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "d" / "broker.log").exists()      # found before the broker started


def test_a_command_word_is_found_past_the_options_and_their_values():
    from flywheel.cli import build_parser, command_named
    assert command_named(["--config", "joiner", "--data-dir", "d", "worker", "--at-least-once"]) == "worker"
    assert command_named(["-c", "f.toml", "up", "--demo"]) == "up"
    assert command_named(["--help"]) is None
    # A named command's parser is the only one built; an unknown word builds them all to list them.
    assert list(build_parser("joiner")._subparsers._group_actions[0].choices) == ["joiner"]
    assert "import" in build_parser("nosuch")._subparsers._group_actions[0].choices
