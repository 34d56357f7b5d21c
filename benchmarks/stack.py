"""A whole stack for a benchmark: `flywheel up` (no demo) on a fresh data dir and free ports, as
a process group of its own, and the environment it and the benchmark share. Used by
bench_system.py and bench_drift.py --stack."""
import os
import subprocess
import sys
import time
from pathlib import Path

from flywheel.streams.broker import free_port, port_is_free

from flywheel.stack import StackState
from flywheel.views.stackfile import read_stack

METRICS_PORTS = 16              # consecutive free ports for the stack's endpoints


def stack_env(data_dir: Path, run: str, defaults: dict[str, str]) -> dict[str, str]:
    """The environment of the stack and of the benchmark: a fresh data dir and the benchmark's
    `defaults`; against a cluster a topic prefix, against Cassandra a keyspace of this run's own;
    unless the environment sets them."""
    env = {**defaults, **os.environ, "FLYWHEEL_DATA_DIR": str(data_dir)}
    if env.get("FLYWHEEL_BOOTSTRAP"):
        env.setdefault("FLYWHEEL_TOPIC_PREFIX", f"bench{run}.")
    if env.get("FLYWHEEL_CASSANDRA_HOSTS"):
        env.setdefault("FLYWHEEL_STORE_BACKEND", "cassandra")
        env.setdefault("FLYWHEEL_STORE_CASSANDRA_KEYSPACE", f"flywheel_bench_{run}")
    return env


def free_port_run(count: int) -> int:
    """A port with the next `count - 1` free as well: the stack numbers its processes' endpoints
    from its --metrics-port on."""
    while True:
        first = free_port()
        if first + count < 65536 and all(port_is_free(p, "0.0.0.0") for p in range(first, first + count)):
            return first


def start_stack(env: dict[str, str], data_dir: Path, model: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "flywheel", "up", "--model", model, "--broker-port", str(free_port()),
            "--registry-port", str(free_port()), "--metrics-port", str(free_port_run(METRICS_PORTS))]
    with open(data_dir / "up.log", "ab") as log:
        return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def await_stack(up: subprocess.Popen, data_dir: Path, timeout: float = 120.0) -> StackState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise SystemExit(f"flywheel up exited with code {up.returncode}: see {data_dir / 'up.log'}")
        state = read_stack(data_dir)
        if state is not None:
            return state
        time.sleep(0.5)
    raise SystemExit(f"flywheel up wrote no stack.json in {timeout:g}s: see {data_dir / 'up.log'}")


def stop_stack(up: subprocess.Popen) -> None:
    up.terminate()                   # `flywheel up` stops its processes and broker on SIGTERM
    try:
        up.wait(60)
    except subprocess.TimeoutExpired:
        up.kill()
        up.wait()
