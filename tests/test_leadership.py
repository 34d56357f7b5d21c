"""Leadership among trigger and rollout processes (processors/runtime/leadership.py), on the real
broker: a decision in progress holds its model's leadership; then two processes share the models,
none led by both; a process that leaves, or is killed with kill -9, hands its models to the
stand-by; and of two triggers exactly one requests a model's retrain, the other once the first
has gone."""
import dataclasses
import subprocess
import sys
import textwrap
import time

from flywheel.processors.runtime.leadership import Leadership
from flywheel.processors.trigger.process import RetrainTrigger
from flywheel.processors.trigger.settings import TriggerSettings
from flywheel.streams.topics import LEADERSHIP_PARTITIONS

from tests.test_trigger_process import drifted

ALL = frozenset(range(LEADERSHIP_PARTITIONS))
MODELS = [f"model-{i}" for i in range(40)]


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


def split(a, b) -> bool:
    """Both hold some partitions and together all, none twice."""
    return bool(a.partitions and b.partitions) and a.partitions | b.partitions == ALL \
        and not a.partitions & b.partitions


def test_a_decision_in_progress_keeps_its_leadership_until_it_ends(kafka, make_topics):
    make_topics()
    first = Leadership(kafka, "trigger")
    wait_for(lambda: first.partitions == ALL)
    with first.deciding(MODELS[0]) as leads:
        assert leads
        second = Leadership(kafka, "trigger")
        # A join takes about 3 s here: without the hold, the second would have its share by then.
        time.sleep(6)
        assert second.partitions == frozenset() and first.leads(MODELS[0])
    wait_for(lambda: split(first, second))
    assert all(first.leads(m) != second.leads(m) for m in MODELS)
    assert any(first.leads(m) for m in MODELS) and any(second.leads(m) for m in MODELS)
    first.close()
    wait_for(lambda: second.partitions == ALL)
    second.close()


def test_a_killed_leader_is_replaced_by_the_stand_by(kafka, make_topics):
    make_topics()
    leader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from flywheel.processors.runtime.leadership import Leadership
        from flywheel.streams.settings import KafkaSettings
        held = Leadership(KafkaSettings(bootstrap={kafka.bootstrap!r}, topic_prefix={kafka.topic_prefix!r},
                                        session_timeout_ms=6000), "trigger")
        while True:
            print(len(held.partitions), flush=True)
            time.sleep(0.2)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        while int(leader.stdout.readline()) != LEADERSHIP_PARTITIONS:
            pass
        standby = Leadership(kafka, "trigger")
        wait_for(lambda: standby.partitions and standby.partitions != ALL)     # it shares, then
        leader.kill()
        leader.wait()
        wait_for(lambda: standby.partitions == ALL)                            # it leads alone
        standby.close()
    finally:
        leader.kill()


def test_of_two_triggers_one_requests_and_the_other_takes_over(kafka, registry, make_topics, data_dir):
    store = drifted(kafka, registry, make_topics("m"), data_dir)
    settings = TriggerSettings(drift_windows=3, new_labels=0, cooldown_seconds=0)
    a, b = (RetrainTrigger(kafka, registry, store, settings, leadership=Leadership(kafka, "trigger"))
            for _ in range(2))
    wait_for(lambda: split(a.leadership, b.leadership))

    assert len(a.step() + b.step()) == 1
    leader, standby = (a, b) if a.leadership.leads("m") else (b, a)
    [record] = store.retrains("m")
    store.put_retrain(dataclasses.replace(record, status="done"))
    leader.close()
    wait_for(lambda: standby.leadership.leads("m"))
    [request] = standby.step()
    assert request["reasons"] == ["drift"]
    standby.close()
    store.close()
