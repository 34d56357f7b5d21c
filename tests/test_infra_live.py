"""infra/ against a running embedded stack: every metric name the Grafana dashboard and the alert
rules query is one the processors really export, and Debian's Prometheus server scrapes the
processors and answers a Flywheel metric through its HTTP API.

The names are taken from the dashboard JSON and the rules file themselves, so this test is the one
place that ties them to the processors' /metrics.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from functools import partial
from pathlib import Path

import pytest
import yaml
from flywheel.streams.broker import free_port
from prometheus_client.parser import text_string_to_metric_families

from tests.ports import stack_ports

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
DASHBOARD = INFRA / "grafana" / "dashboards" / "flywheel.json"
RULES = INFRA / "prometheus" / "rules" / "flywheel.rules.yml"
MODEL = "infra"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"), "info": ("_info",), "gauge": ("",),
            "unknown": ("",), "stateset": ("",), "gaugehistogram": ("_bucket", "_gsum", "_gcount")}


def referenced_metric_names() -> dict[str, set[str]]:
    """Each flywheel_* series name the dashboard or the rules query, with where it is used."""
    uses: dict[str, set[str]] = {}

    def note(expr: str, where: str) -> None:
        for name in re.findall(r"\b(flywheel_[a-zA-Z0-9_:]+)", expr):
            uses.setdefault(name, set()).add(where)

    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            note(target["expr"], f"dashboard panel {panel['title']!r}")
    for annotation in dashboard["annotations"]["list"]:
        note(annotation.get("expr", ""), f"dashboard annotation {annotation['name']!r}")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            note(variable["query"]["query"], f"dashboard variable {variable['name']!r}")
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            note(rule["expr"], f"alert {rule.get('alert') or rule.get('record')}")
    return uses


def exported_names(text: str) -> set[str]:
    """Series names a /metrics page offers, including families declared with no sample yet
    (a labelled gauge is declared before its first label set is seen)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


def scrape(port: int, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        return response.read().decode()


def wait_for(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


# ---- the embedded stack ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory):
    """`flywheel up` on the session broker, with its own topic prefix, data dir and ports."""
    data_dir = tmp_path_factory.mktemp("infra-stack")
    log = data_dir.parent / "flywheel-up.log"
    prefix = f"i{uuid.uuid4().hex[:8]}."
    # Consumer groups of its own too: on the shared session broker, a group other tests' workers
    # joined would make this stack's worker wait for their members to leave.
    groups = {f"FLYWHEEL_{p.upper()}_GROUP_ID": f"{prefix}{p}" for p in ("worker", "joiner", "monitor", "retrainer")}
    env = {**os.environ, "FLYWHEEL_BOOTSTRAP": broker, "FLYWHEEL_DATA_DIR": str(data_dir),
           "FLYWHEEL_TOPIC_PREFIX": prefix, "FLYWHEEL_KAFKA_SESSION_TIMEOUT_MS": "6000", **groups}
    # Module-scoped: the autouse fixture that gives each test a free registry port has not run yet.
    ports = stack_ports(16)
    proc = subprocess.Popen([sys.executable, "-m", "flywheel", "up", "--metrics-port", str(ports.metrics),
                             "--registry-port", str(ports.registry),
                             "--model", MODEL, "--for", "600"],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=data_dir)
    try:
        state_path = data_dir / "stack.json"
        wait_for(lambda: state_path.exists() or proc.poll() is not None, 60, "stack.json", log)
        assert proc.poll() is None, f"flywheel up exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        state = json.loads(state_path.read_text())
        for spec in state["processes"]:
            wait_for(partial(_answers, spec["metrics_port"]), 60,
                     f"{spec['name']} /metrics on port {spec['metrics_port']}", data_dir / f"{spec['name']}.log")
        drive_traffic(state, env)
        yield state
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(port: int) -> bool:
    try:
        scrape(port, timeout=1)
        return True
    except OSError:
        return False


def drive_traffic(state: dict, env: dict) -> None:
    """Register a tiny model, send requests (a few of them bad) and labels, and wait until the
    worker has predicted, so counters and histograms have samples, not only declarations."""
    from flywheel.processors.models import ModelRegistry
    from flywheel.processors.training import synthetic, train
    from flywheel.schemas.registry import open_registry
    from flywheel.streams.labels import LabelPublisher
    from flywheel.streams.publisher import Publisher, Request

    from flywheel.config import load_config

    config = load_config(None, env=env)
    registry = open_registry(None, config.data_dir)
    data = synthetic(400, n_numeric=4, seed=1)
    model = train(MODEL, "1", data.numeric, data.target, data.spec, hidden=(4,), max_iter=30)
    models = ModelRegistry(config.kafka, registry, config.data_dir, actor="test")
    models.register(model.onnx_bytes, model.manifest)
    models.close()
    publisher = Publisher(config.kafka, registry, MODEL)
    rows = data.rows(0, 50)
    ids = publisher.publish_many([Request(row) for row in rows])
    publisher.publish_many([Request({"f00": 1.0})] * 3)        # missing features: dead letters
    publisher.flush()
    labels = LabelPublisher(config.kafka, registry)
    for request_id, truth in zip(ids, data.target[:50]):
        labels.label(request_id, label=str(truth), model=MODEL)
    labels.flush()
    worker = next((p for p in state["processes"] if p["name"] == "worker"), None)
    if worker:
        wait_for(lambda: "flywheel_predictions_total{" in scrape(worker["metrics_port"]), 60,
                 "the worker's first predictions", Path(state["data_dir"]) / "worker.log")


# ---- tests -----------------------------------------------------------------------------------

def test_dashboard_and_rules_query_only_metrics_the_processors_export(stack):
    exported: set[str] = set()
    for spec in stack["processes"]:
        page = scrape(spec["metrics_port"])
        exported |= exported_names(page)
        labels = {label for f in text_string_to_metric_families(page) for s in f.samples for label in s.labels}
        # The scrape configs add `service` (and Prometheus `job`, `instance`) to every series.
        assert not labels & {"service", "job", "instance"}, f"{spec['name']} exports a label the scrape config sets"
    uses = referenced_metric_names()
    missing = {name: where for name, where in uses.items() if name not in exported}
    running = ", ".join(p["name"] for p in stack["processes"]) or "none"
    assert not missing, (
        f"{len(missing)} of {len(uses)} metric names used by infra/ are exported by no running processor "
        f"(running: {running}):\n" + "\n".join(f"  {n}  <- {'; '.join(sorted(w))}" for n, w in sorted(missing.items())))


def test_prometheus_server_scrapes_the_stack_and_answers_a_flywheel_metric(stack, tmp_path):
    prometheus = shutil.which("prometheus")
    if not prometheus:
        pytest.skip("prometheus is not installed (infra/install-test-tools.sh installs it)")
    assert stack["processes"], "the embedded stack runs no processor to scrape"
    with_samples = {spec["name"]: [s for f in text_string_to_metric_families(scrape(spec["metrics_port"]))
                                   if f.name.startswith("flywheel_") for s in f.samples]
                    for spec in stack["processes"]}
    found = [(s.name, service) for service, samples in with_samples.items() for s in samples]
    assert found, "no processor exports a flywheel_* sample yet"
    # The worker's prediction counter if traffic got through, else whatever has a sample.
    wanted, service = min(found, key=lambda f: (f[0] != "flywheel_predictions_total", f))

    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(RULES)],
              "scrape_configs": [{"job_name": "flywheel", "static_configs": [
                  {"targets": [f"127.0.0.1:{p['metrics_port']}"], "labels": {"service": p["name"]}}
                  for p in stack["processes"]]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = tmp_path / "prometheus.log"
    server = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=log.open("wb"), stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_for(lambda: _query(api, 'up{job="flywheel"} == 1', len(stack["processes"])), 30,
                 "Prometheus to scrape every processor", log)
        result = wait_for(lambda: _query(api, f'{wanted}{{service="{service}"}}'), 30,
                          f"{wanted} from {service} through Prometheus", log)
        assert result[0]["metric"]["__name__"] == wanted
        assert result[0]["metric"]["instance"].startswith("127.0.0.1:")
        float(result[0]["value"][1])
        with urllib.request.urlopen(f"{api}/rules", timeout=5) as response:
            groups = {g["name"] for g in json.load(response)["data"]["groups"]}
        assert {"flywheel.pipeline", "flywheel.models"} <= groups
    finally:
        server.terminate()
        server.wait(10)


def _query(api: str, promql: str, at_least: int = 1) -> list | None:
    try:
        with urllib.request.urlopen(f"{api}/query?query={urllib.parse.quote(promql)}", timeout=5) as response:
            body = json.load(response)
    except OSError:
        return None
    result = body["data"]["result"]
    return result if len(result) >= at_least else None
