"""Listen where told: /metrics binds loopback unless configured; instance ids unique per process
unless a supervisor gives a stable one."""
import subprocess
import sys
import urllib.request

from flywheel.processors.runtime import start_metrics_server
from flywheel.streams.broker import free_port
from prometheus_client import CollectorRegistry, Counter

from flywheel.config import load_config


def _bound(config) -> str:
    registry = CollectorRegistry()
    Counter("probe", "probe", registry=registry).inc()
    server, thread = start_metrics_server(config.metrics_port, registry, config.metrics_addr)
    try:
        address = server.server_address[0]
        body = urllib.request.urlopen(f"http://127.0.0.1:{config.metrics_port}/metrics", timeout=5).read()
        assert b"probe_total 1.0" in body
        return address
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_bind_loopback_unless_configured():
    assert _bound(load_config(None, env={"FLYWHEEL_METRICS_PORT": str(free_port())})) == "127.0.0.1"
    told = load_config(None, env={"FLYWHEEL_METRICS_PORT": str(free_port()), "FLYWHEEL_METRICS_ADDR": "0.0.0.0"})
    assert _bound(told) == "0.0.0.0"


def test_instance_ids_are_unique_per_process_unless_given():
    code = "from flywheel.processors.worker.settings import WorkerSettings; print(WorkerSettings().instance_id)"
    ids = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
           for _ in range(2)}
    assert len(ids) == 2
    assert load_config(None, env={"FLYWHEEL_INSTANCE_ID": "pod-7"}).instance_id == "pod-7"
    assert load_config(None, env={}).instance_id == ""
