"""The broker goes away in the middle of a stream and comes back: every request still has exactly
one committed prediction, every bad record one dead letter, and the worker never exits (an
unreachable broker is backpressure, not a crash).

On the embedded broker the outage is a relay in front of Tansu cutting every connection and
refusing new ones (Tansu keeps records in memory, so restarting its process would lose them). On
Apache Kafka (FLYWHEEL_BOOTSTRAP set) the broker process itself is restarted by the command in
FLYWHEEL_BROKER_RESTART (its data dir stays), and no duplicate at all is accepted."""
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import replace

import pytest

from streams.broker import EmbeddedBroker, free_port
from tests.faults import BrokerRelay
from tests.test_worker_support import (assert_one_exposed_batch, committed_count, read_topic, register,
                                       stream_requests, wait_for, worker_process)


@pytest.fixture
def bounceable(config, tmp_path):
    """(config pointing at a broker that can be bounced, bounce(seconds))."""
    if os.environ.get("FLYWHEEL_BOOTSTRAP"):
        command = os.environ.get("FLYWHEEL_BROKER_RESTART")
        if not command:
            pytest.skip("FLYWHEEL_BROKER_RESTART (a command that restarts the broker) is not set")
        yield config, lambda _seconds: subprocess.run(command, shell=True, check=True, timeout=120).returncode == 0
        return
    relay_port = free_port()
    with EmbeddedBroker(free_port(), tmp_path / "broker.log", advertised_port=relay_port) as broker:
        relay = BrokerRelay(relay_port, broker.port)
        try:
            kafka = replace(config.kafka, bootstrap=f"127.0.0.1:{relay_port}")
            yield replace(config, kafka=kafka), relay.outage
        finally:
            relay.close()


def _bounce_mid_stream(bounceable, registry, total: int, seconds: float, outage_s: float):
    from flywheel.wiring import ensure_core_topics
    config, bounce = bounceable
    kafka = config.kafka
    ensure_core_topics(config, ["m"])
    from streams.topics import TopicCatalog
    catalog = TopicCatalog(kafka)
    register(kafka, registry, config.data_dir, "m")
    result = {}
    serving = threading.Event()
    publishing = threading.Thread(target=lambda: result.update(
        zip(("ids", "bad"), stream_requests(kafka, registry, catalog.requests("m"), total, seconds, serving))))
    worker = worker_process(config, "bounce-test")
    publishing.start()
    try:
        wait_for(lambda: committed_count(kafka, catalog.predictions("m")) > 0, timeout=60)
        serving.set()
        wait_for(lambda: committed_count(kafka, catalog.predictions("m")) > total // 4, timeout=60, every=0.05)
        bounced_at = int(time.time() * 1000)
        assert bounce(outage_s), "the bounce reached no client connection"
        publishing.join()
        ids, bad = result["ids"], result["bad"]
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", len(ids), timeout=120)
        letters = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", bad, timeout=30)
        assert worker.poll() is None, f"the worker exited: {worker.stderr.read().decode()[-2000:]}"
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    per_id = Counter(p["request_id"] for p, _ in predictions)
    assert set(per_id) == set(ids), f"{len(set(ids) - set(per_id))} request(s) never answered"
    duplicated = {i for i, n in per_id.items() if n > 1}
    if duplicated and not os.environ.get("FLYWHEEL_BOOTSTRAP"):
        assert_one_exposed_batch(predictions, duplicated, bounced_at, max_batch=500)
    else:
        assert not duplicated, f"{len(duplicated)} request ids answered more than once"
    per_offset = Counter((d["source_partition"], d["source_offset"]) for d, _ in letters)
    assert len(per_offset) == bad and set(per_offset.values()) == {1}


def test_broker_outage_mid_stream(bounceable, registry):
    _bounce_mid_stream(bounceable, registry, total=3000, seconds=4.0, outage_s=3.0)


@pytest.mark.soak
def test_broker_bounce_mid_stream_of_20000(bounceable, registry):
    _bounce_mid_stream(bounceable, registry, total=20_000, seconds=10.0, outage_s=10.0)
