"""The whole loop on the embedded stack, time-compressed: `flywheel up --demo` trains a first
model, traffic drifts, the monitor flags it, the trigger asks for a retrain, the retrainer's
candidate is validated and deployed as a canary, the rollout promotes it, and accuracy recovers."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.models import EventLog

from flywheel.demo import DemoSettings
from tests.ports import stack_ports

SPEED, DRIFT_AT = 8.0, 240.0          # drift 30 s after the start


def _accuracy(records) -> float:
    records = [r for r in records if r.true_label is not None]
    assert len(records) >= 100, f"only {len(records)} labelled records"
    return sum(r.predicted_label == r.true_label for r in records) / len(records)


def _env(data_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env["FLYWHEEL_DATA_DIR"] = str(data_dir)
    return env


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    env = _env(data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "flywheel", "up", "--demo", "--speed", str(SPEED),
                             "--drift-at", str(DRIFT_AT), *stack_ports().up_args()],
                            env=env, stderr=subprocess.PIPE, text=True)
    started = time.time() * 1000
    promoted_at = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            events = EventLog(data_dir).events("churn")
            promoted = [e for e in events if e["kind"] == "PROMOTED"]
            if promoted and promoted_at is None:
                promoted_at = promoted[0]["at"]
            if promoted_at and time.time() * 1000 > promoted_at + 25_000:
                break
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    logs = "\n".join(f"== {p.name}\n"
                     + "\n".join(line for line in p.read_text().splitlines() if not line.startswith("%"))[-1500:]
                     for p in sorted(data_dir.glob("*.log")))
    return data_dir, started, promoted_at, proc.returncode, err + logs


def test_the_stack_stops_cleanly(demo_run):
    data_dir, _, _, code, err = demo_run
    assert code == 0, err[-2000:]
    assert "stopped" in err and not (data_dir / "stack.json").exists()


def test_drift_leads_to_retrain_canary_and_promotion(demo_run):
    data_dir, started, promoted_at, _, err = demo_run
    kinds = [(e["kind"], e["actor"]) for e in EventLog(data_dir).events("churn")]
    assert kinds[0] == ("REGISTERED", "demo")
    assert ("CANARY", "retrainer") in kinds, kinds
    assert promoted_at is not None, f"no promotion; events: {kinds}\n{err[-2000:]}"
    with open_store(StoreSettings(), data_dir) as store:
        retrains = store.retrains("churn")
        assert retrains and "drift" in retrains[0].reasons
        assert any(r.status == "done" and r.new_version for r in retrains)
        windows = list(store.metrics("churn", "v1", int(started) - 60_000, promoted_at))
        assert any(w.values.get("drift_flagged") for w in windows), "the monitor never flagged drift"


def test_accuracy_recovers_after_promotion(demo_run):
    data_dir, started, promoted_at, _, _ = demo_run
    assert promoted_at is not None
    drift_ms = int(re.search(r"concept drifted at (\d+)", (data_dir / "simulator.log").read_text()).group(1))
    live = [e for e in EventLog(data_dir).events("churn") if e["kind"] == "PROMOTED"][0]["live_version"]
    with open_store(StoreSettings(), data_dir) as store:
        before = _accuracy(store.feedback("churn", int(started), int(drift_ms) - 2000, "v1"))
        during = _accuracy(store.feedback("churn", int(drift_ms) + 5000, promoted_at, "v1"))
        after = _accuracy(store.feedback("churn", promoted_at + 2000, int(time.time() * 1000), live))
    assert during < before - 0.15, (before, during)
    assert after >= before - 0.05, (before, during, after)


def test_a_demo_resumes_after_the_drift_once_a_retrained_version_exists(tmp_path):
    log = EventLog(tmp_path)
    log.append({"model": "churn", "kind": "REGISTERED", "version": "v1", "at": 1, "actor": "demo"})
    log.append({"model": "other", "kind": "REGISTERED", "version": "v2", "at": 2, "actor": "retrainer"})
    assert DemoSettings(drift_at=300).resumed(log.events("churn")).drift_at == 300
    log.append({"model": "churn", "kind": "REJECTED", "version": "v2", "at": 3, "actor": "retrainer"})
    assert DemoSettings(drift_at=300).resumed(log.events("churn")).drift_at == 300   # v1 still serves
    log.append({"model": "churn", "kind": "REGISTERED", "version": "v3", "at": 4, "actor": "retrainer"})
    assert DemoSettings(drift_at=300).resumed(log.events("churn")).drift_at == 0
    assert DemoSettings(drift_at=-1).resumed(log.events("churn")).drift_at == -1      # never stays never


def test_a_restarted_demo_continues_after_the_drift(demo_run):
    """Last in this module: it restarts the stack on the finished run's data dir for 20 s, less
    than the 30 s the story takes to its drift, so only a resumed simulator drifts in that time."""
    data_dir, _, promoted_at, _, _ = demo_run
    assert promoted_at is not None
    done = subprocess.run([sys.executable, "-m", "flywheel", "up", "--demo", "--speed", str(SPEED),
                           "--drift-at", str(DRIFT_AT), *stack_ports().up_args(), "--for", "20"],
                          env=_env(data_dir), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "continuing after the drift" in done.stderr
    drifts = [int(ms) for ms in re.findall(r"concept drifted at (\d+)", (data_dir / "simulator.log").read_text())]
    assert len(drifts) == 2 and drifts[1] > promoted_at, drifts
