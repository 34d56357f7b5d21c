"""The broker goes away in the middle of a stream and comes back: every request still has exactly
one committed prediction, every bad record one dead letter, and the worker never exits (an
unreachable broker is backpressure, not a crash).

On the embedded broker the outage is a relay in front of Tansu cutting every connection and
refusing new ones (Tansu keeps records in memory, so restarting its process would lose them). On
Apache Kafka (FLYWHEEL_BOOTSTRAP set) the broker process itself is restarted by the command in
FLYWHEEL_BROKER_RESTART (its data dir stays), and no duplicate at all is accepted."""
import os
import subprocess
from dataclasses import replace

import pytest
from flywheel.streams.broker import EmbeddedBroker, free_port
from flywheel.streams.topics import TopicCatalog

from flywheel.wiring import ensure_core_topics
from tests.faults import BrokerRelay
from tests.test_worker_support import register, run_disrupted_stream


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
    config, bounce = bounceable
    ensure_core_topics(config, ["m"])
    register(config.kafka, registry, config.data_dir, "m")

    def bounce_broker(worker):
        assert bounce(outage_s), "the bounce reached no client connection"
        return worker
    run_disrupted_stream(config, registry, TopicCatalog(config.kafka), total, seconds, bounce_broker, "bounce-test")


def test_broker_outage_mid_stream(bounceable, registry):
    _bounce_mid_stream(bounceable, registry, total=3000, seconds=4.0, outage_s=3.0)


@pytest.mark.soak
def test_broker_bounce_mid_stream_of_20000(bounceable, registry):
    _bounce_mid_stream(bounceable, registry, total=20_000, seconds=10.0, outage_s=10.0)
