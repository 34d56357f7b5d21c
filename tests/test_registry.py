"""The embedded registry's ids are stable across restarts and shared between processes."""
import json
import multiprocessing
import subprocess
import sys

from flywheel.schemas import RECORD_NAMES
from flywheel.schemas.registry import open_registry
from flywheel.streams.settings import KafkaSettings

from flywheel.config import Config
from flywheel.stack import Stack
from flywheel.wiring import register_all_schemas, schema_registry
from tests.ports import stack_ports


def _register_in_child(data_dir, queue):
    queue.put(register_all_schemas(open_registry(None, data_dir)))


def test_ids_are_shared_by_concurrent_processes(data_dir):
    queue = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(target=_register_in_child, args=(data_dir, queue))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results[0] == results[1] == results[2]
    assert sorted(results[0]) == sorted(RECORD_NAMES)
    assert len(set(results[0].values())) == len(RECORD_NAMES)


def test_ids_survive_a_restart_of_the_stack(tmp_path):
    """Start the embedded stack, note the ids, stop it (the broker forgets everything), start it
    again on the same data dir: every record type keeps its id. The backbone (broker, registry,
    topics) is what holds ids; the processors only look them up. Free ports throughout: a
    developer's own stack may hold the defaults."""
    # The stack checks the metrics ports it would number upward from metrics_port: a block must be free.
    ports = stack_ports(8)
    config = Config(data_dir=tmp_path / "stack", metrics_port=ports.metrics,
                    kafka=KafkaSettings(embedded_port=ports.broker, embedded_registry_port=ports.registry,
                                        session_timeout_ms=6000))
    ids = []
    for _ in range(2):
        stack = Stack(config)
        stack.start_backbone()
        try:
            assert stack.broker is not None and stack.broker.running
            ids.append(register_all_schemas(schema_registry(config)))
        finally:
            stack.stop()
    assert ids[0] == ids[1]


def test_a_fresh_process_reads_what_another_registered(data_dir):
    ids = register_all_schemas(open_registry(None, data_dir))
    code = ("import sys; from flywheel.schemas.registry import open_registry; "
            f"r = open_registry(None, {str(data_dir)!r}); print(r.schema_by_id({ids['Prediction']}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["name"] == "Prediction"
