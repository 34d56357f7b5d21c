"""The embedded store's disk full, on a real small filesystem (issue 27): the store file
(`[store.sqlite] path`) on a 4 MiB tmpfs of the test's own. A running joiner writes half the
requests' feedback; a ballast file then fills the filesystem (ENOSPC) and the other half's
predictions and labels arrive. The joiner must hold back (its log says so), stay up and commit
no label offset past what it could not write; once the ballast is deleted it resumes on its own
and every labelled request ends with exactly one feedback row.

Mounting a tmpfs needs root (or CAP_SYS_ADMIN): elsewhere the test is skipped with that reason.
"""
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from flywheel.feature_store import StoreSettings, open_store
from flywheel.feature_store.settings import SqliteSettings
from flywheel.processors.joiner.process import FeedbackJoiner
from flywheel.processors.joiner.settings import JoinerSettings
from flywheel.streams.clients import make_consumer

from tests.test_joiner_process import T0, Topics, _label, _prediction

N = 200
SPAN = (T0 - 3_600_000, T0 + 3_600_000)


@pytest.fixture
def small_fs(tmp_path) -> Path:
    """A 4 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
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
    store = open_store(StoreSettings(sqlite=SqliteSettings(path=str(small_fs / "store.sqlite"))), data_dir)
    topics = Topics(kafka, registry, make_topics("m"))
    joiner = FeedbackJoiner(kafka, registry, store, JoinerSettings(join_window_seconds=3600, group_id="diskfull"),
                            instance="diskfull")
    thread = threading.Thread(target=joiner.run, daemon=True)
    stored = lambda: list(store.feedback("m", *SPAN))                                      # noqa: E731
    labels_committed = lambda: committed(kafka, "diskfull", topics.catalog.labels)        # noqa: E731
    holding = lambda: [r.getMessage() for r in caplog.records                              # noqa: E731
                       if "joiner: StoreUnavailable, holding back" in r.getMessage()]
    thread.start()
    try:
        flow(topics, range(N // 2))
        assert wait_for(lambda: len(stored()) == N // 2 and labels_committed() == N // 2, timeout=60)
        ballast = fill(small_fs)
        flow(topics, range(N // 2, N))
        assert wait_for(lambda: len(holding()) >= 3 or not thread.is_alive(), timeout=60)
        assert thread.is_alive(), "the joiner exited on a full disk"
        assert "database or disk is full" in holding()[0]
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
    finally:
        joiner.stop.set()
        thread.join(30)
        store.close()
    assert not thread.is_alive()
