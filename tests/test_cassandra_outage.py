"""A Cassandra node stopped for a minute under load and started again (issue 27), checked record
by record. A joiner on the cluster joins a steady stream of predictions and their labels; once
feedback flows the node is stopped with FLYWHEEL_CASSANDRA_STOP (a shell command: `docker kill
cassandra` is a crash, `nodetool stopdaemon` a clean stop) for FLYWHEEL_CASSANDRA_OUTAGE_SECONDS
(60), then started with FLYWHEEL_CASSANDRA_START, while the stream goes on. Afterwards every
labelled request, those labelled during the outage counted apart, has exactly one feedback row
(one label counted) and one feedback record on the topic, and the joiner never exited: the outage
was backpressure (processors/runtime/failures.py), nothing lost, nothing joined twice.

It is one of the long fault-injection runs (`./bin/soak tests`) and runs when
FLYWHEEL_CASSANDRA_HOSTS names the cluster and both commands are set; skipped with the reason
otherwise (docs/operating/cassandra.md says how to run it against a node in Docker)."""
import os
import subprocess
import threading
import time
from collections import Counter

import pytest
from flywheel.processors.joiner.process import FeedbackJoiner
from flywheel.processors.joiner.settings import JoinerSettings

from tests.store_harness import CASSANDRA_HOSTS, NO_CASSANDRA, drop, make_backend
from tests.test_joiner_process import T0, Topics, _label, _prediction
from tests.test_store_disk_full import running, wait_for
from tests.test_worker_support import read_topic

STOP = os.environ.get("FLYWHEEL_CASSANDRA_STOP", "")
START = os.environ.get("FLYWHEEL_CASSANDRA_START", "")
pytestmark = [pytest.mark.soak,
              pytest.mark.skipif(not CASSANDRA_HOSTS, reason=NO_CASSANDRA),
              pytest.mark.skipif(not (STOP and START), reason="FLYWHEEL_CASSANDRA_STOP and FLYWHEEL_CASSANDRA_START "
                                                              "are not set: no way to stop and start the node")]
OUTAGE_S = float(os.environ.get("FLYWHEEL_CASSANDRA_OUTAGE_SECONDS", 60))
RATE = 100                      # requests (and labels) a second
BEFORE_S, AFTER_S = 15, 30      # of the stream around the outage
SPAN = (T0 - 3_600_000, T0 + 24 * 3_600_000)


@pytest.fixture
def cassandra(tmp_path):
    """A store on the cluster, in a keyspace of its own (dropped afterwards)."""
    backend = make_backend("cassandra", tmp_path)
    store = backend.open()
    yield store
    drop(backend, store)
    store.close()


def _truth(i: int) -> str:
    return "yes" if i % 3 else "no"


def _shell(command: str) -> None:
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command!r} exited {done.returncode}: {done.stderr.strip()}"


class Stream:
    """Predictions at RATE a second, each labelled one tick later, until stopped; when each label
    was published."""

    def __init__(self, topics: Topics):
        self.topics = topics
        self.labelled_at: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Stream":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        started, sent, labelled = time.monotonic(), 0, 0
        while not self._stop.wait(0.1):
            due = int((time.monotonic() - started) * RATE)
            self.topics.labels([_label(i, _truth(i)) for i in range(labelled, sent)])
            now = time.monotonic()
            self.labelled_at.update(dict.fromkeys(range(labelled, sent), now))
            self.topics.predictions([_prediction(i) for i in range(sent, due)])
            labelled, sent = sent, due


def test_a_cassandra_node_down_a_minute_under_load_loses_no_label_and_joins_none_twice(
        cassandra, kafka, registry, make_topics):
    topics = Topics(kafka, registry, make_topics("m"))
    joiner = FeedbackJoiner(kafka, registry, cassandra,
                            JoinerSettings(join_window_seconds=3600, group_id=f"{kafka.topic_prefix}outage"),
                            instance="outage")
    stored = lambda: list(cassandra.feedback("m", *SPAN))                         # noqa: E731
    with running(joiner) as thread:
        with Stream(topics) as stream:
            assert wait_for(lambda: len(stored()) > 0, timeout=60), "no feedback before the outage"
            time.sleep(BEFORE_S)
            stopped = time.monotonic()
            _shell(STOP)
            time.sleep(OUTAGE_S)
            assert thread.is_alive(), "the joiner exited while the node was down"
            _shell(START)
            started = time.monotonic()
            time.sleep(AFTER_S)
        labelled = sorted(stream.labelled_at)
        during = [i for i, at in stream.labelled_at.items() if stopped <= at <= started]
        assert during, "no label was published while the node was down"
        assert wait_for(lambda: len(stored()) >= len(labelled), timeout=300), \
            f"{len(stored())} of {len(labelled)} feedback rows 5 minutes after the node came back"
        assert thread.is_alive()
    rows = stored()
    per_request = Counter(r.request_id for r in rows)
    missing = [i for i in during if per_request[f"r{i}"] == 0]
    print(f"\ncassandra outage: {len(labelled)} labels, {len(during)} published during the {OUTAGE_S:g}s outage; "
          f"feedback rows {len(rows)}, missing {len(missing)}, twice {sum(n > 1 for n in per_request.values())}")
    assert not missing, f"{len(missing)} labels of the outage without a feedback row, e.g. r{missing[0]}"
    assert sorted(per_request) == sorted(f"r{i}" for i in labelled) and set(per_request.values()) == {1}
    assert all(r.label_count == 1 and r.true_label == _truth(int(r.request_id[1:])) for r in rows)
    feedback = Counter(record["request_id"] for record, _ in
                       read_topic(kafka, registry, topics.catalog.feedback, "FeedbackRecord", len(labelled)))
    assert set(feedback.values()) == {1} and len(feedback) == len(labelled), \
        f"{sum(n > 1 for n in feedback.values())} requests joined twice on the feedback topic"
