"""Store throughput: writes/s and batched online reads/s at batch sizes 1, 100, 1000.

    .venv/bin/python benchmarks/bench_store.py [--backend sqlite|cassandra] [--seconds 2] [--entities 50000]

sqlite: a fresh store in a temporary directory (WAL mode, the stack's settings). cassandra: a
fresh keyspace on the cluster FLYWHEEL_CASSANDRA_HOSTS names (other [store] settings from the
environment, e.g. FLYWHEEL_STORE_CASSANDRA_CONCURRENCY), dropped at the end. Each case runs for --seconds
and the result is a markdown table. Reads ask for random entity ids of which one in ten does not
exist. Machines here have 2 shared cores: compare rows within one run.
"""
import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flywheel.feature_store import FeatureStore, FeedbackRecord, OnlineFeatures, StoreSettings, open_store  # noqa: E402

from flywheel.config import Config  # noqa: E402

BATCHES = (1, 100, 1000)


def features(i: int) -> dict:
    return {"age": float(i % 90), "income": i * 1.5, "city": f"city{i % 50}", "tier": None}


def feedback(i: int) -> FeedbackRecord:
    t = 1_700_000_000_000 + i * 10
    return FeedbackRecord(f"r{i}", f"e{i}", "m", "v1", event_time=t, predicted_at=t + 2, labelled_at=t + 60_000,
                          numeric={"x": 1.0, "y": 2.0}, categorical={"c": "red"}, predicted_label="a",
                          scores={"a": 0.8, "b": 0.2}, confidence=0.8, true_label="b")


def timed(seconds: float, step) -> tuple[float, float]:
    """Units per wall-clock second and per CPU second of this process, of `step()` (which returns
    how many units it did) run for `seconds`. On a shared, loaded machine the CPU rate is the
    steadier one; the wall rate includes waiting for the disk and for a core."""
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step()
    return done / elapsed, done / max(time.process_time() - cpu, 1e-9)


@contextmanager
def fresh_store(backend: str):
    """A store of its own: a temporary SQLite file, or a new Cassandra keyspace dropped after."""
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "sqlite":
            with open_store(StoreSettings(), Path(tmp)) as store:
                yield store
            return
        settings = Config(env=dict(os.environ)).section(StoreSettings, "store")
        if not settings.cassandra.hosts:
            sys.exit("bench_store.py --backend cassandra: set FLYWHEEL_CASSANDRA_HOSTS")
        settings = replace(settings, backend="cassandra",
                           cassandra=replace(settings.cassandra, keyspace=f"flywheel_bench_{uuid.uuid4().hex[:8]}"))
        store = open_store(settings, Path(tmp))
        try:
            store.migrate()
            yield store
        finally:
            store.session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra.keyspace}")
            store.close()


def describe(store: FeatureStore) -> str:
    if store.backend == "sqlite":
        return f"embedded store (SQLite {sqlite3.sqlite_version}, WAL)"
    return f"Cassandra ({', '.join(store.settings.cassandra.hosts)}, {store.settings.cassandra.concurrency} in flight)"


def cases(store: FeatureStore, batch: int, entities: int, rng: random.Random) -> tuple:
    """The three measured calls at one batch size: online writes, feedback writes, online reads."""
    counter = iter(range(10**9))

    def write_online():
        start = next(counter) * batch
        store.put_online("writes", [OnlineFeatures(f"w{start + j}", features(j), 0) for j in range(batch)],
                         ttl_s=3600)
        return batch

    def write_feedback():
        start = next(counter) * batch
        store.put_feedback([feedback(start + j) for j in range(batch)])
        return batch

    def read_online():
        ids = [f"e{rng.randrange(int(entities * 1.1))}" for _ in range(batch)]
        store.get_online("bench", ids)
        return batch

    return write_online, write_feedback, read_online


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("sqlite", "cassandra"), default="sqlite")
    ap.add_argument("--seconds", type=float, default=2.0, help="per case")
    ap.add_argument("--entities", type=int, default=50_000, help="entities preloaded for the read cases")
    args = ap.parse_args()
    rng = random.Random(1)
    rows = []
    with fresh_store(args.backend) as store:
        for i in range(0, args.entities, 1000):
            store.put_online("bench", [OnlineFeatures(f"e{j}", features(j), 0) for j in range(i, i + 1000)])
        for batch in BATCHES:
            rows.append((batch, *(timed(args.seconds, f) for f in cases(store, batch, args.entities, rng))))
        title = describe(store)
    load = os.getloadavg()[0]
    print(f"{title}, {os.cpu_count()} cores, load average {load:.1f}; each cell: per wall second / per CPU second")
    print()
    print("| batch size | online feature writes (rows/s) | feedback writes (records/s) | "
          "online reads (entities/s) | online read calls/s |")
    print("|---:|---:|---:|---:|---:|")
    for batch, online_w, feedback_w, reads in rows:
        cells = [f"{wall:,.0f} / {cpu:,.0f}" for wall, cpu in (online_w, feedback_w, reads)]
        print(f"| {batch:,} | {' | '.join(cells)} | {reads[0] / batch:,.1f} / {reads[1] / batch:,.1f} |")


if __name__ == "__main__":
    main()
