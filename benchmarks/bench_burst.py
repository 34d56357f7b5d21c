"""Bursts that must not grow a processor's memory (docs/operating/bounds.md), as markdown tables.

    .venv/bin/python benchmarks/bench_burst.py [--labels 1000000] [--good 2000] [--flood 1000000]
                                               [--names 100000] [--only hold|joiner|monitor]

hold: what one held label keeps, measured with tracemalloc over 20,000 labels held by a joiner in
this process (Python allocations: the Hold, Label, Held, the Message with its key and value, the
dict and heap entries), against the size the bound counts (holds.message_size); and the cost of
the bound's check: per batch when nothing is given up, per hold given up.

joiner: a joiner process with the default settings (`max_held_labels`, `max_held_bytes`; another
count with `--max-held-labels`) takes `--good` predictions, then `--labels` labels for requests
never predicted with `--good` good labels spread among them. Its resident memory is sampled every
0.2 s: the baseline before the burst and the peak during it, against the bound; then the labels
held, given up, and whether every good label joined.

monitor: a monitor process with one registered model version takes `--flood` predictions under
`--names` model names nobody registered, with a registered version's predictions among them
(each carrying a feature name its spec lacks). Reported: its resident memory, the windows open,
the unregistered records counted, and whether the registered version's window closed.

Each processor runs in a process of its own (spawned, as `flywheel up` runs it) against an
embedded broker of this run's own, on free ports.
"""
import argparse
import gc
import multiprocessing
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_loop import announce, total_of  # noqa: E402
from flywheel.feature_store import ReferenceProfile, StoreSettings, open_store  # noqa: E402
from flywheel.processors.joiner.holds import message_size  # noqa: E402
from flywheel.processors.joiner.process import FeedbackJoiner  # noqa: E402
from flywheel.processors.joiner.settings import HoldBound, JoinerSettings  # noqa: E402
from flywheel.processors.monitor.process import Monitor  # noqa: E402
from flywheel.processors.monitor.profile import build_reference  # noqa: E402
from flywheel.processors.monitor.settings import MonitorSettings  # noqa: E402
from flywheel.processors.runtime.gc_tuning import tune_gc  # noqa: E402
from flywheel.schemas import AvroSerde  # noqa: E402
from flywheel.schemas.features import Feature, FeatureSpec  # noqa: E402
from flywheel.schemas.registry import open_registry  # noqa: E402
from flywheel.streams.broker import EmbeddedBroker, free_port  # noqa: E402
from flywheel.streams.clients import make_admin, make_producer  # noqa: E402
from flywheel.streams.settings import KafkaSettings  # noqa: E402
from flywheel.streams.topics import TopicCatalog, ensure_topics  # noqa: E402

SPEC = FeatureSpec((Feature("x", min=-5, max=5), Feature("c", "categorical", categories=("a", "b"))))
WINDOW_S = 5


def now_ms() -> int:
    return int(time.time() * 1000)


def prediction(i: int, model: str = "m", t: int | None = None) -> dict:
    t = t or now_ms()
    return {"request_id": f"r{i}", "entity_id": "e", "model": model, "model_version": "1", "event_time": t,
            "predicted_at": t, "label": "yes", "scores": {"yes": 0.6, "no": 0.4}, "confidence": 0.6,
            "numeric": {"x": float(i % 7) - 3, "extra": 1.0}, "categorical": {"c": "ab"[i % 2]}}


def label(request_id: str) -> dict:
    return {"request_id": request_id, "model": "m", "label": "yes", "value": None, "labelled_at": now_ms(),
            "source": "bench"}


def send(kafka: KafkaSettings, topic: str, values: list[bytes], keys: list[bytes]) -> None:
    producer = make_producer(kafka, **{"linger.ms": 50})
    for value, key in zip(values, keys):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:       # the local queue is full: let it drain
                producer.poll(0.1)
    producer.flush(120)


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- hold: what one held label keeps ------------------------------------------------------------

def bench_hold(kafka: KafkaSettings, work: Path, n: int = 20_000) -> list[str]:
    registry = open_registry(None, work)
    store = open_store(StoreSettings(), work)
    settings = JoinerSettings(max_held_labels=10 * n, max_held_bytes=2**34, group_id=f"hold-{uuid.uuid4().hex[:6]}")
    joiner = FeedbackJoiner(kafka, registry, store, settings, instance="hold")
    serde = AvroSerde(registry, "GroundTruth")
    send(kafka, joiner.catalog.labels, [serde.encode(label(f"u{i}")) for i in range(n)],
         [f"u{i}".encode() for i in range(n)])
    joiner.step()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    deadline = time.monotonic() + 120
    while len(joiner.holds) < n and time.monotonic() < deadline:
        joiner.step()
    gc.collect()
    kept = (tracemalloc.get_traced_memory()[0] - before) / len(joiner.holds)
    tracemalloc.stop()
    counted = joiner.holds.bytes / len(joiner.holds)
    messages = [h.message for h in joiner.holds._by_id.values()]
    start = time.perf_counter()
    for i in range(0, len(messages), settings.batch_size):
        sum(map(message_size, messages[i:i + settings.batch_size]))
    check_us = (time.perf_counter() - start) / (len(messages) / settings.batch_size) * 1e6
    start = time.perf_counter()
    given_up = joiner.holds.over(HoldBound(0, settings.max_held_bytes), 0, 0)
    give_up_us = (time.perf_counter() - start) / len(given_up) * 1e6
    joiner.close()
    store.close()
    return ["| what | figure |", "|---|---:|",
            f"| Python memory a held label keeps (tracemalloc, {n:,} holds) | {kept:,.0f} bytes |",
            f"| size the bound counts per hold (message_size) | {counted:,.0f} bytes |",
            f"| bound check per batch of {settings.batch_size:,} labels, nothing given up | {check_us:,.0f} µs |",
            f"| giving up one hold (over) | {give_up_us:.2f} µs |"]


# -- joiner: a burst of labels for unknown requests ---------------------------------------------

def joiner_process(kafka: KafkaSettings, work: Path, settings: JoinerSettings, status, stop) -> None:
    tune_gc()
    registry, store = open_registry(None, work), open_store(StoreSettings(), work)
    joiner = FeedbackJoiner(kafka, registry, store, settings, instance="burst")
    while not stop.is_set():
        status[0] += joiner.step()
        status[1], status[2] = len(joiner.holds), joiner.holds.bytes
        status[3] = int(total_of(joiner.metrics.registry, "flywheel_held_labels_given_up_total"))
    joiner.close()
    store.close()


def bench_joiner(kafka: KafkaSettings, work: Path, labels: int, good: int, bound: JoinerSettings) -> list[str]:
    registry = open_registry(None, work)
    catalog = TopicCatalog(kafka)
    spawn = multiprocessing.get_context("spawn")     # never fork a process holding librdkafka threads
    status, stop = spawn.Array("q", 4), spawn.Event()
    proc = spawn.Process(target=joiner_process, args=(kafka, work, bound, status, stop))
    proc.start()
    predictions = AvroSerde(registry, "Prediction")
    send(kafka, catalog.predictions("m"), [predictions.encode(prediction(i)) for i in range(good)],
         [f"r{i}".encode() for i in range(good)])
    wait_for(lambda: status[0] >= good, 120)
    time.sleep(1)
    baseline = rss_kb(proc.pid)
    serde = AvroSerde(registry, "GroundTruth")
    ids = [f"u{i}" for i in range(labels)]
    for i in range(good):                                      # good labels spread through the burst
        ids.insert(i * labels // good, f"r{i}")
    start = time.monotonic()
    send(kafka, catalog.labels, [serde.encode(label(rid)) for rid in ids], [rid.encode() for rid in ids])
    sent = time.monotonic() - start
    peak, most = baseline, 0
    deadline = time.monotonic() + 1800
    while status[0] < good + len(ids) and time.monotonic() < deadline:
        peak, most = max(peak, rss_kb(proc.pid)), max(most, status[1])
        time.sleep(0.2)
    took = time.monotonic() - start
    held, held_bytes, given_up = status[1], status[2], status[3]
    stop.set()
    proc.join(60)
    store = open_store(StoreSettings(), work)
    joined = len({f.request_id for f in store.feedback("m", now_ms() - 3_600_000, now_ms() + 60_000)})
    store.close()
    return ["| what | figure |", "|---|---:|",
            f"| labels sent (unknown + good) | {labels:,} + {good:,} (sent in {sent:.0f} s) |",
            f"| bound | max_held_labels {bound.max_held_labels:,}, "
            f"max_held_bytes {bound.max_held_bytes / 2**20:.0f} MiB |",
            f"| resident memory before the burst | {baseline / 1024:,.0f} MB |",
            f"| peak resident memory during the burst | {peak / 1024:,.0f} MB "
            f"(+{(peak - baseline) / 1024:,.0f} MB) |",
            f"| most labels held at once | {most:,} |",
            f"| held at the end | {held:,} ({held_bytes / 2**20:,.1f} MiB counted) |",
            f"| given up (hold_bound dead letters) | {given_up:,} |",
            f"| good labels joined | {joined:,} of {good:,} |",
            f"| records through the joiner | {status[0]:,} in {took:.0f} s ({status[0] / took:,.0f}/s) |"]


# -- monitor: a flood of unknown model names ----------------------------------------------------

def monitor_process(kafka: KafkaSettings, work: Path, status, stop) -> None:
    tune_gc()
    registry, store = open_registry(None, work), open_store(StoreSettings(), work)
    monitor = Monitor(kafka, registry, store, MonitorSettings(window_seconds=WINDOW_S, allowed_lateness_seconds=1,
                                                              group_id="burst-mon"))
    while not stop.is_set():
        closed = monitor.step()
        status[0] = int(total_of(monitor.metrics.registry, "flywheel_records_in_total"))
        status[1] = max(status[1], monitor.windows.open_windows)
        status[2] += sum(1 for r in closed if r.model == "m")
        status[3] = int(total_of(monitor.metrics.registry, "flywheel_monitor_unregistered_records_total"))
    monitor.close()
    store.close()


def bench_monitor(kafka: KafkaSettings, work: Path, flood: int, names: int) -> list[str]:
    registry = open_registry(None, work)
    catalog = TopicCatalog(kafka)
    announce(kafka, registry, "m", "1")
    rng = np.random.default_rng(1)
    with open_store(StoreSettings(), work) as store:
        reference = build_reference(SPEC, {"x": rng.normal(0, 2, 5000)}, {"c": rng.choice(["a", "b"], 5000)},
                                    scores=np.full(5000, 0.6), labels=np.full(5000, "yes"))
        store.put_profile(ReferenceProfile("m", "1", now_ms(), reference.to_bytes()))
    spawn = multiprocessing.get_context("spawn")
    status, stop = spawn.Array("q", 4), spawn.Event()
    proc = spawn.Process(target=monitor_process, args=(kafka, work, status, stop))
    proc.start()
    serde = AvroSerde(registry, "Prediction")
    distinct = [serde.encode(prediction(i, f"unknown{i}")) for i in range(names)]
    time.sleep(5)                                           # the monitor joins its group
    baseline = rss_kb(proc.pid)
    values = [distinct[i % names] for i in range(flood)]
    good = max(1, flood // 100)
    for i in range(good):
        values.insert(i * flood // good, serde.encode(prediction(i)))
    start = time.monotonic()
    send(kafka, catalog.predictions("m"), values, [b"k%d" % (i % 64) for i in range(len(values))])
    peak = baseline
    deadline = time.monotonic() + 1800
    while status[0] < len(values) and time.monotonic() < deadline:
        peak = max(peak, rss_kb(proc.pid))
        time.sleep(0.2)
    took = time.monotonic() - start
    wait_for(lambda: status[2] > 0, 3 * WINDOW_S)           # the registered version's windows close
    stop.set()
    proc.join(60)
    with open_store(StoreSettings(), work) as store:
        partials = list(store.partials("burst-mon", 0, now_ms() + 3_600_000))
    return ["| what | figure |", "|---|---:|",
            f"| predictions sent | {flood:,} under {names:,} unregistered model names + {good:,} of m/1 |",
            f"| resident memory before the flood | {baseline / 1024:,.0f} MB |",
            f"| peak resident memory during the flood | {peak / 1024:,.0f} MB (+{(peak - baseline) / 1024:,.0f} MB) |",
            f"| most windows open after a batch | {status[1]:,} |",
            f"| window partials written to the store | {len(partials):,} "
            f"({len({p.model for p in partials}):,} model names) |",
            f"| unregistered records counted (no window) | {status[3]:,} |",
            f"| windows of m/1 closed | {status[2]:,} |",
            f"| records through the monitor | {status[0]:,} in {took:.0f} s ({status[0] / took:,.0f}/s) |"]


def wait_for(done, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--labels", type=int, default=1_000_000)
    p.add_argument("--good", type=int, default=2000)
    p.add_argument("--flood", type=int, default=1_000_000)
    p.add_argument("--names", type=int, default=100_000)
    p.add_argument("--max-held-labels", type=int, default=JoinerSettings.max_held_labels)
    p.add_argument("--only", choices=("hold", "joiner", "monitor"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(free_port(), Path(tmp) / "broker.log") as broker:
        for part in ("hold", "joiner", "monitor"):
            if args.only not in (None, part):
                continue
            kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix=f"burst{uuid.uuid4().hex[:6]}.",
                                  partitions=4, session_timeout_ms=6000)
            catalog = TopicCatalog(kafka)
            ensure_topics(make_admin(kafka), catalog.core() + catalog.for_model("m"))
            work = Path(tmp) / part
            work.mkdir()
            if part == "hold":
                lines = bench_hold(kafka, work)
            elif part == "joiner":
                bound = JoinerSettings(group_id="burst", max_held_labels=args.max_held_labels)
                lines = bench_joiner(kafka, work, args.labels, args.good, bound)
            else:
                lines = bench_monitor(kafka, work, args.flood, args.names)
            print(f"\n{part}\n\n" + "\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
