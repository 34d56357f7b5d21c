"""Throughput of the feedback loop's processors on this machine, as a markdown table.

Joiner: predictions and labels -> FeedbackRecords in the embedded (SQLite) store, once through the
join alone (store writes only), once through the naive loop (the join with the store called once
per record, on the first 3,000), and twice end to end through the embedded broker (decode, join,
store, produce feedback, commit in Kafka transactions): on the Python path, then on the compiled
core (schemas/wire/compiled) where it is built; the ratios of the join and of the whole joiner to
the naive loop, and of the compiled core to the Python path, are printed under the table.
Monitor: feature values per second into window sketches, once from decoded records and once end
to end from the broker.

    .venv/bin/python benchmarks/bench_loop.py [--records 20000] [--features 8] [--backend sqlite|cassandra]
                                              [--only joiner|monitor] [--joiners N]

--joiners N adds a row for N joiner processes in one consumer group end to end (`flywheel up
--joiners N`), on topics and a SQLite store of their own: how the joiner scales on this machine.

--backend cassandra puts each case's store in a fresh keyspace on FLYWHEEL_CASSANDRA_HOSTS
(bench_store.py's `fresh_store`).

Figures are for one process on a 2-core machine shared with the broker; compare rows of one run.
End-to-end rows time from the first batch on (the consumer group join is not throughput), and
their seconds are the total work at that rate. Each row also gives the rate per CPU second of
the processing thread (Kafka client threads and the broker excluded): on a loaded machine the
steadier figure, and the one a capacity model needs. The monitor's end-to-end row at the default
20,000 records times under a tenth of a second of work (from the second batch on); quote it from
`--records 100000`.
"""
import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_store import fresh_store  # noqa: E402
from flywheel.feature_store import ReferenceProfile, StoreSettings, open_store  # noqa: E402
from flywheel.processors.joiner.join import Join, Label, prediction_record  # noqa: E402
from flywheel.processors.joiner.process import FeedbackJoiner  # noqa: E402
from flywheel.processors.joiner.settings import JoinerSettings  # noqa: E402
from flywheel.processors.monitor.process import Monitor  # noqa: E402
from flywheel.processors.monitor.profile import build_reference  # noqa: E402
from flywheel.processors.monitor.settings import MonitorSettings  # noqa: E402
from flywheel.processors.monitor.windows import WindowedMonitor  # noqa: E402
from flywheel.processors.runtime.gc_tuning import tune_gc  # noqa: E402
from flywheel.schemas import AvroSerde  # noqa: E402
from flywheel.schemas.features import Feature, FeatureSpec  # noqa: E402
from flywheel.schemas.registry import open_registry  # noqa: E402
from flywheel.schemas.wire.compiled import runs  # noqa: E402
from flywheel.streams.broker import EmbeddedBroker, free_port  # noqa: E402
from flywheel.streams.clients import make_admin, make_producer  # noqa: E402
from flywheel.streams.settings import KafkaSettings  # noqa: E402
from flywheel.streams.topics import TopicCatalog, ensure_topics  # noqa: E402

T0 = int(time.time() * 1000) - 600_000


NAIVE_RECORDS = 3000   # the naive loop's predictions (and labels): a transaction each, so few


def spec(features: int) -> FeatureSpec:
    numeric = [Feature(f"x{i}", min=-5, max=5) for i in range(features - 1)]
    return FeatureSpec(tuple(numeric + [Feature("c", "categorical", categories=("a", "b", "c"))]))


def predictions(n: int, features: int, rng) -> list[dict]:
    x = rng.normal(size=(n, features - 1))
    cats = rng.choice(["a", "b", "c"], n)
    return [{"request_id": f"r{i}", "entity_id": f"e{i}", "model": "m", "model_version": "1",
             "event_time": T0 + i // 100, "predicted_at": T0 + i // 100, "label": "yes" if row[0] > 0 else "no",
             "scores": {"yes": 0.6, "no": 0.4}, "confidence": 0.6,
             "numeric": {f"x{j}": float(v) for j, v in enumerate(row)}, "categorical": {"c": str(c)}}
            for i, (row, c) in enumerate(zip(x, cats))]


def labels(n: int) -> list[dict]:
    return [{"request_id": f"r{i}", "model": "m", "label": "yes", "value": None,
             "labelled_at": T0 + 60_000 + i // 100, "source": "bench"} for i in range(n)]


def bench_join_store(records: list[dict], backend: str, batch: int = 2000) -> tuple[float, float, int]:
    """Seconds, CPU seconds, feedback records written. `batch` 1 is the naive loop: the store
    once per record, as the joiner was before it was batch-first."""
    with fresh_store(backend) as store:
        join = Join(store, JoinerSettings())
        preds = [prediction_record(r) for r in records]
        ground = [Label.from_ground_truth(r) for r in labels(len(records))]
        start, cpu, written = time.perf_counter(), time.thread_time(), 0
        for i in range(0, len(preds), batch):
            join.add_predictions(preds[i:i + batch])
        for i in range(0, len(ground), batch):
            written += len(join.add_labels(ground[i:i + batch]).feedback)
        return time.perf_counter() - start, time.thread_time() - cpu, written


def bench_monitor_core(records: list[dict], reference) -> tuple[float, float]:
    monitor = WindowedMonitor(60_000, 0, lambda m, v: reference)
    start, cpu = time.perf_counter(), time.thread_time()
    for i in range(0, len(records), 5000):
        monitor.add_predictions(records[i:i + 5000])
    results = monitor.close_due(T0 + 10**9)
    assert sum(r.rows for r in results) == len(records)
    return time.perf_counter() - start, time.thread_time() - cpu


def bench_sketch_columns(n: int, features: int, reference) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    columns = {f"x{j}": rng.normal(size=n) for j in range(features - 1)}
    window = reference.empty_like(0, 60_000)
    start, cpu = time.perf_counter(), time.thread_time()
    window.add_columns(n, columns, {"c": rng.choice(["a", "b", "c"], n).tolist()})
    return time.perf_counter() - start, time.thread_time() - cpu


def produce(kafka: KafkaSettings, registry, topic: str, record_name: str, records: list[dict]) -> None:
    serde, producer = AvroSerde(registry, record_name), make_producer(kafka)
    for r in records:
        producer.produce(topic, serde.encode(r), r["request_id"].encode())
        producer.poll(0)
    producer.flush(60)


def rate_after_first_batch(step, progress, total: int, timeout: float = 300.0) -> tuple[float, float]:
    """Records per second and per CPU second of this thread after the first batch that made
    progress (the group join and the first fetch are not throughput): (total - progress then) /
    seconds since."""
    deadline = time.monotonic() + timeout
    while progress() == 0:
        step()
        if time.monotonic() > deadline:
            raise TimeoutError("nothing consumed")
    start, cpu, first = time.perf_counter(), time.thread_time(), progress()
    while progress() < total:
        step()
        if time.monotonic() > deadline:
            raise TimeoutError("did not finish")
    return (total - first) / (time.perf_counter() - start), (total - first) / (time.thread_time() - cpu)


def announce(kafka: KafkaSettings, registry, model: str, version: str) -> None:
    """A ModelEvent registering `version` of `model` (no artifact: the monitor and joiner follow
    only the event)."""
    event = {"model": model, "kind": "PROMOTED", "version": version, "at": int(time.time() * 1000), "actor": "bench",
             "reason": "", "evidence": {}, "live_version": version, "canary_version": None, "canary_share": 0.0,
             "shadow_versions": [], "versions": {version: {"manifest_path": "-", "sha256": "-"}}}
    producer = make_producer(kafka)
    producer.produce(TopicCatalog(kafka).models, AvroSerde(registry, "ModelEvent").encode(event), model.encode())
    producer.flush(10)


def total_of(registry, sample: str) -> float:
    """A counter's sum over its labels (an unregistered model is counted as "unregistered")."""
    return sum(s.value for metric in registry.collect() for s in metric.samples if s.name == sample)


def bench_joiner_kafka(kafka, registry, records, backend: str, compiled: bool = False) -> tuple[float, float]:
    """Records in (predictions and labels) per second and per CPU second, on the compiled core
    (where built) or the Python path; the predictions and labels are on their topics already, and
    each run reads them all in a group of its own. Timed by records consumed, not feedback joined:
    the joiner reads most predictions before their labels, and a clock started at the first
    feedback would leave them out."""
    with fresh_store(backend) as store:
        settings = JoinerSettings(group_id=f"bench-{uuid.uuid4().hex[:6]}", compiled=compiled)
        joiner = FeedbackJoiner(kafka, registry, store, settings, instance="bench")
        consumed = lambda: total_of(joiner.metrics.registry, "flywheel_records_in_total")   # noqa: E731
        rate = rate_after_first_batch(joiner.step, consumed, 2 * len(records))
        joiner.close()
        return rate


def joiner_in_group(kafka: KafkaSettings, work: Path, group: str, consumed, total: int, out) -> None:
    """One of --joiners N processes in one group, on the shared SQLite store: sends back (wall
    time, records this process took in) after every batch."""
    tune_gc()
    with open_store(StoreSettings(), work) as store:
        joiner = FeedbackJoiner(kafka, open_registry(None, work), store, JoinerSettings(group_id=group),
                                instance=f"bench-{os.getpid()}")
        mine, samples, deadline = 0.0, [], time.monotonic() + 300
        while consumed.value < total and time.monotonic() < deadline:
            joiner.step()
            now = total_of(joiner.metrics.registry, "flywheel_records_in_total")
            if now > mine:
                with consumed.get_lock():
                    consumed.value += int(now - mine)
                mine = now
                samples.append((time.time(), mine))
        joiner.close()
    out.put(samples)


def group_rate(runs: list[list[tuple[float, float]]]) -> float:
    """Per second, what a group's processes did together while every one of them was at work:
    from the time the last one made its first progress to the time the first one made its last
    (before, the group is still forming; after, fewer are at work). `runs`: per process, (time,
    its running total) samples in time order."""
    start, end = max(run[0][0] for run in runs), min(run[-1][0] for run in runs)
    at = lambda run, t: max([n for s, n in run if s <= t], default=0.0)   # noqa: E731
    return sum(at(run, end) - at(run, start) for run in runs) / (end - start)


def bench_joiners_kafka(kafka, work: Path, records, processes: int) -> float:
    """Records in per second of `processes` joiners in one group (`group_rate`), on topics and a
    SQLite store of their own."""
    kafka = replace(kafka, topic_prefix=f"{kafka.topic_prefix}group.")     # topics of its own
    catalog, registry = TopicCatalog(kafka), open_registry(None, work)
    ensure_topics(make_admin(kafka), catalog.core() + catalog.for_model("m"))
    produce(kafka, registry, catalog.predictions("m"), "Prediction", records)
    produce(kafka, registry, catalog.labels, "GroundTruth", labels(len(records)))
    spawn = multiprocessing.get_context("spawn")     # never fork a process holding librdkafka threads
    consumed, out = spawn.Value("q", 0), spawn.Queue()
    group = f"bench-{uuid.uuid4().hex[:6]}"
    procs = [spawn.Process(target=joiner_in_group, args=(kafka, work, group, consumed, 2 * len(records), out))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    runs = [out.get(timeout=400) for _ in procs]
    for proc in procs:
        proc.join()
    return group_rate(runs)


def bench_monitor_kafka(kafka, registry, records, reference, backend: str) -> tuple[float, float]:
    """Predictions per second and per CPU second."""
    announce(kafka, registry, "m", "1")       # the monitor opens windows for registered versions only
    with fresh_store(backend) as store:
        store.put_profile(ReferenceProfile("m", "1", T0, reference.to_bytes()))
        monitor = Monitor(kafka, registry, store, MonitorSettings(window_seconds=60, group_id="bench-mon"),
                          stop=threading.Event(), clock=lambda: T0)
        consumed = lambda: total_of(monitor.metrics.registry, "flywheel_records_in_total")   # noqa: E731
        rate = rate_after_first_batch(monitor.step, consumed, len(records))
        monitor.close()
        return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=8, help="features per record (one categorical)")
    parser.add_argument("--backend", choices=("sqlite", "cassandra"), default="sqlite")
    parser.add_argument("--only", choices=("joiner", "monitor"), help="only that processor's rows")
    parser.add_argument("--joiners", type=int, default=1, metavar="N",
                        help="also time N joiner processes in one group end to end (SQLite store shared)")
    args = parser.parse_args()
    tune_gc()    # as every processor runs (flywheel/wiring.py start_processor)
    joiner, monitor = args.only in (None, "joiner"), args.only in (None, "monitor")
    n, f = args.records, args.features
    rng = np.random.default_rng(0)
    records = predictions(n, f, rng)
    ref_x = rng.normal(size=(50_000, f - 1))
    reference = build_reference(spec(f), {f"x{j}": ref_x[:, j] for j in range(f - 1)},
                                {"c": rng.choice(["a", "b", "c"], 50_000)}, scores=rng.random(50_000),
                                labels=rng.choice(["yes", "no"], 50_000))
    values = n * (f + 2)     # features plus the predicted score and label
    rows, ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if joiner:
            seconds, cpu, written = bench_join_store(records, args.backend)
            rows.append((f"joiner: join only, into the {args.backend} store", f"{2 * n:,} records in", seconds,
                         f"{2 * n / seconds:,.0f} records/s in, {written / seconds:,.0f} feedback/s",
                         f"{2 * n / cpu:,.0f} records in"))
            naive_n = min(n, NAIVE_RECORDS)
            naive_seconds, cpu, written = bench_join_store(records[:naive_n], args.backend, batch=1)
            naive = 2 * naive_n / naive_seconds
            rows.append((f"joiner: naive loop, the {args.backend} store once per record", f"{2 * naive_n:,} records in",
                         naive_seconds, f"{naive:,.0f} records/s in, {written / naive_seconds:,.0f} feedback/s",
                         f"{2 * naive_n / cpu:,.0f} records in"))
            ratios.append(f"join only / naive loop: {2 * n / seconds / naive:.1f}x")
        if monitor:
            seconds, cpu = bench_monitor_core(records, reference)
            rows.append(("monitor: decoded records into window sketches", f"{values:,} values", seconds,
                         f"{values / seconds:,.0f} feature values/s", f"{values / cpu:,.0f} values"))
            seconds, cpu = bench_sketch_columns(n * 10, f, reference)
            rows.append(("monitor: columns into sketches (ceiling)", f"{n * 10 * f:,} values", seconds,
                         f"{n * 10 * f / seconds:,.0f} feature values/s", f"{n * 10 * f / cpu:,.0f} values"))
        with EmbeddedBroker(free_port(), work / "broker.log") as broker:
            kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix="bench.", session_timeout_ms=6000)
            ensure_topics(make_admin(kafka), TopicCatalog(kafka).core() + TopicCatalog(kafka).for_model("m"))
            registry = open_registry(None, work)
            produce(kafka, registry, TopicCatalog(kafka).predictions("m"), "Prediction", records)
            if joiner:
                produce(kafka, registry, TopicCatalog(kafka).labels, "GroundTruth", labels(n))
                python_rate, python_cpu_rate = bench_joiner_kafka(kafka, registry, records, args.backend, False)
                rows.append(("joiner: end to end, Python path (broker -> store -> feedback, transactions)",
                             f"{2 * n:,} records in", 2 * n / python_rate,
                             f"{python_rate:,.0f} records/s in, {python_rate / 2:,.0f} feedback/s",
                             f"{python_cpu_rate:,.0f} records in"))
                path = runs()
                rate, cpu_rate = bench_joiner_kafka(kafka, registry, records, args.backend, True)
                rows.append((f"joiner: end to end, {path} path (broker -> store -> feedback, transactions)",
                             f"{2 * n:,} records in", 2 * n / rate,
                             f"{rate:,.0f} records/s in, {rate / 2:,.0f} feedback/s", f"{cpu_rate:,.0f} records in"))
                ratios.append(f"joiner end to end / naive loop (store alone): {rate / naive:.1f}x")
                ratios.append(f"joiner end to end, {path} / Python path: {rate / python_rate:.2f}x "
                              f"({cpu_rate / python_cpu_rate:.2f}x per CPU second)")
            if joiner and args.joiners > 1 and args.backend == "sqlite":
                rate = bench_joiners_kafka(kafka, work, records, args.joiners)
                rows.append((f"{args.joiners} joiners in one group, end to end", f"{2 * n:,} records in",
                             2 * n / rate, f"{rate:,.0f} records/s in, {rate / 2:,.0f} feedback/s", "-"))
            if monitor:
                rate, cpu_rate = bench_monitor_kafka(kafka, registry, records, reference, args.backend)
                per_record = values / n
                rows.append(("monitor: end to end (broker -> decode -> sketches)", f"{values:,} values", n / rate,
                             f"{rate * per_record:,.0f} feature values/s ({rate:,.0f} predictions/s)",
                             f"{cpu_rate * per_record:,.0f} values"))
    print(f"\n{n:,} predictions with {f} features each ({f - 1} numeric, 1 categorical), {args.backend} store\n")
    print("| what | work | seconds | throughput | per CPU second (processing thread) |")
    print("|---|---|---:|---|---|")
    for what, work_done, seconds, rate, cpu_rate in rows:
        print(f"| {what} | {work_done} | {seconds:.2f} | {rate} | {cpu_rate} |")
    if ratios:
        print("\nIn this run: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
