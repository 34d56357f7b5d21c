"""Kill -9 a worker process in the middle of a stream, restart it: every request id has exactly
one committed prediction (read_committed) and every bad record exactly one dead letter.

The default run streams 4,000 requests; the soak run (-m soak) the full 20,000.

On the embedded Tansu broker one exception is measured, not hidden: Tansu does not abort a
transaction whose producer is fenced by a restarted instance, it exposes it. If the kill lands
while the last batch's transaction is being flushed and committed, that one batch is answered
twice: once by the killed instance before the kill, once by its successor after. The test then
checks exactly that shape (at most one batch, two copies, one on each side of the kill). Against
Apache Kafka (FLYWHEEL_BOOTSTRAP set) no duplicate at all is accepted."""
import os
import signal
import threading
import time
from collections import Counter

import pytest

from tests.test_worker_support import (assert_one_exposed_batch, committed_count, read_topic, register,
                                       stream_requests, wait_for, worker_process)


def _kill_mid_stream(config, registry, make_topics, total: int, seconds: float):
    kafka = config.kafka
    catalog = make_topics("m")
    register(kafka, registry, config.data_dir, "m")
    result = {}
    serving = threading.Event()
    publishing = threading.Thread(target=lambda: result.update(
        zip(("ids", "bad"), stream_requests(kafka, registry, catalog.requests("m"), total, seconds, serving))))
    first = worker_process(config, "crash-test")
    publishing.start()
    try:
        wait_for(lambda: committed_count(kafka, catalog.predictions("m")) > 0, timeout=60)
        serving.set()
        wait_for(lambda: committed_count(kafka, catalog.predictions("m")) > total // 4, timeout=60, every=0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = int(time.time() * 1000)
        assert publishing.is_alive(), "the stream should still be flowing when the worker dies"
        second = worker_process(config, "crash-test")
        publishing.join()
        ids, bad = result["ids"], result["bad"]
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", len(ids), timeout=90)
        letters = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", bad, timeout=30)
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    assert second.returncode == 0, second.stderr.read().decode()[-2000:]
    per_id = Counter(p["request_id"] for p, _ in predictions)
    assert set(per_id) == set(ids)
    duplicated = {i for i, n in per_id.items() if n > 1}
    if duplicated and not os.environ.get("FLYWHEEL_BOOTSTRAP"):
        assert_one_exposed_batch(predictions, duplicated, killed_at, max_batch=500)
    else:
        assert not duplicated, f"{len(duplicated)} request ids answered more than once"
    per_offset = Counter((d["source_partition"], d["source_offset"]) for d, _ in letters)
    assert len(per_offset) == bad and set(per_offset.values()) == {1}


def test_kill_9_mid_stream_then_restart(config, registry, make_topics):
    _kill_mid_stream(config, registry, make_topics, total=4000, seconds=4.0)


@pytest.mark.soak
def test_kill_9_mid_stream_of_20000(config, registry, make_topics):
    _kill_mid_stream(config, registry, make_topics, total=20_000, seconds=10.0)
