"""The embedded store's disk full, on a real small filesystem (issue 27): the store file
(`[store.sqlite] path`) on a 4 MiB tmpfs of the test's own, filled to ENOSPC by a ballast file
while records flow, then freed by deleting the ballast.

- The joiner writes half the requests' feedback; the disk fills; the other half's predictions and
  labels arrive. It holds back (its log says so), stays up and commits no label offset past what
  it could not write; once space returns it resumes on its own and every labelled request ends
  with exactly one feedback row.
- The monitor has read a window's 30 labelled records; the disk fills and the window closes. It
  holds back and stores nothing; once space returns the window is stored once, whole.

Mounting a tmpfs needs root (or CAP_SYS_ADMIN): elsewhere the tests are skipped with that reason.
"""
import logging
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from flywheel.feature_store import StoreSettings, open_store
from flywheel.feature_store.settings import SqliteSettings
from flywheel.processors.joiner.process import FeedbackJoiner
from flywheel.processors.joiner.settings import JoinerSettings
from flywheel.processors.monitor.process import Monitor
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.schemas import AvroSerde
from flywheel.streams.clients import make_consumer, make_producer

from tests import test_monitor_process as monitored
from tests.test_joiner_process import T0, Topics, _label, _prediction
from tests.test_worker_support import register

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
N = 200
SPAN = (T0 - 3_600_000, T0 + 3_600_000)


@pytest.fixture
def small_fs(tmp_path) -> Path:
    """A 4 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        first_line = done.stderr.strip().partition("\n")[0]
        pytest.skip(f"cannot mount a tmpfs here: {first_line}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Write a ballast file until the filesystem refuses (ENOSPC)."""
    ballast = directory / "ballast"
    with open(ballast, "wb", buffering=0) as f:     # unbuffered: nothing left over to fail at close
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return ballast


def small_store(small_fs: Path, data_dir: Path):
    return open_store(StoreSettings(sqlite=SqliteSettings(path=str(small_fs / "store.sqlite"))), data_dir)


@contextmanager
def running(processor):
    """`processor.run()` in a thread, as its process runs it; stopped and joined on exit."""
    thread = threading.Thread(target=processor.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        processor.stop.set()
        thread.join(30)
    assert not thread.is_alive()


def holding_back(caplog, processor: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"{processor}: StoreUnavailable, holding back" in r.getMessage()]


def _truth(i: int) -> str:
    return "yes" if i % 3 else "no"


def flow(topics: Topics, ids: range) -> None:
    topics.predictions([_prediction(i) for i in ids])
    topics.labels([_label(i, _truth(i)) for i in ids])


def committed(kafka, group: str, topic: str) -> int:
    """The group's committed offsets of the topic, summed over its partitions."""
    consumer = make_consumer(kafka, group)
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(kafka.partitions)], timeout=10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)     # none committed yet: OFFSET_INVALID (< 0)


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return condition()


def test_the_joiner_holds_back_on_a_full_disk_and_resumes_when_space_returns(kafka, registry, data_dir,
                                                                              make_topics, small_fs, caplog):
    caplog.set_level(logging.WARNING, logger="flywheel.failures")
    store = small_store(small_fs, data_dir)
    topics = Topics(kafka, registry, make_topics("m"))
    joiner = FeedbackJoiner(kafka, registry, store, JoinerSettings(join_window_seconds=3600, group_id="diskfull"),
                            instance="diskfull")
    stored = lambda: list(store.feedback("m", *SPAN))                                      # noqa: E731
    labels_committed = lambda: committed(kafka, "diskfull", topics.catalog.labels)        # noqa: E731
    with running(joiner) as thread:
        flow(topics, range(N // 2))
        assert wait_for(lambda: len(stored()) == N // 2 and labels_committed() == N // 2, timeout=60)
        ballast = fill(small_fs)
        flow(topics, range(N // 2, N))
        assert wait_for(lambda: len(holding_back(caplog, "joiner")) >= 3 or not thread.is_alive(), timeout=60)
        assert thread.is_alive(), "the joiner exited on a full disk"
        assert "database or disk is full" in holding_back(caplog, "joiner")[0]
        assert len(stored()) == N // 2
        assert labels_committed() == N // 2          # nothing committed past what it could not write

        ballast.unlink()
        assert wait_for(lambda: len(stored()) == N, timeout=60), f"{len(stored())} of {N} after space returned"
        assert thread.is_alive()
        records = stored()
        assert sorted(r.request_id for r in records) == sorted(f"r{i}" for i in range(N))
        assert all(r.label_count == 1 for r in records)
        assert all(r.true_label == _truth(int(r.request_id[1:])) for r in records)
        assert wait_for(lambda: labels_committed() == N, timeout=30)
    store.close()


def test_the_monitor_holds_back_on_a_full_disk_and_closes_its_window_when_space_returns(
        kafka, registry, data_dir, make_topics, small_fs, caplog):
    """A window of 30 labelled feedback records whose close (partials, progress, metrics) meets
    a full disk: held back, then stored once, whole, when space returns."""
    caplog.set_level(logging.WARNING, logger="flywheel.failures")
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", "1").close()
    store = small_store(small_fs, data_dir)
    settings = MonitorSettings(window_seconds=10, allowed_lateness_seconds=1, idle_seconds=1, group_id="mon-diskfull")
    now = {"ms": monitored.T0 + 1}
    monitor = Monitor(kafka, registry, store, settings, clock=lambda: now["ms"])
    windows = lambda: list(store.metrics("m", "1", monitored.T0, monitored.T0 + 3 * monitored.WINDOW))  # noqa: E731
    with running(monitor) as thread:
        producer, feedback = make_producer(kafka), AvroSerde(registry, "FeedbackRecord")
        for r in monitored._feedback(30, 30, monitored.T0):
            producer.produce(catalog.feedback, feedback.encode(r), r["request_id"].encode(), partition=0)
        producer.flush(10)
        assert wait_for(lambda: monitor._next.get((catalog.feedback, 0)) == 30, timeout=60)    # all 30 read
        ballast = fill(small_fs)
        now["ms"] = monitored.T0 + monitored.WINDOW + 1000          # the window closes on a full disk
        assert wait_for(lambda: len(holding_back(caplog, "monitor")) >= 3 or not thread.is_alive(), timeout=60)
        assert thread.is_alive(), "the monitor exited on a full disk"
        assert windows() == []

        ballast.unlink()
        assert wait_for(lambda: windows() != [], timeout=60), "no window closed after space returned"
        assert thread.is_alive()
    [row] = windows()
    assert (row.window_start, row.values["labelled"], row.values["performance.accuracy"]) == \
        (monitored.T0, 30, 1.0)
    store.close()
