"""Inference worker benchmark: one command, one run, same models and data throughout.

    .venv/bin/python benchmarks/bench_worker.py [--requests 40000] [--seconds 6]

For an MLP (32 features, hidden 64+32) and gradient-boosted trees (100 trees, depth 6):
  (a) raw ONNX Runtime on prebuilt float32 batches of 1,000 rows (the compute limit);
  (b) Kafka passthrough: consume a batch, produce it, commit offsets in the transaction, no
      decoding, no model (the broker limit), same embedded broker, same producer settings;
  (c) a naive worker as tutorials write it: poll one, decode, predict one, produce one, commit;
  (d) the Flywheel worker end to end (its own process, Avro, exactly-once), named features, and
      for the MLP also the `dense` fast path;
then p50/p95/p99 end-to-end latency (request sent -> prediction received by a read_committed
reader) at half of (d)'s measured maximum, next to the bare broker hop (produce -> consume) at the
same rate, and the worker's peak RSS. Prints a markdown table. The machine is shared: read the
ratios (measured in one run), not the absolute rates.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.models import MatrixLayout, ModelRegistry  # noqa: E402
from processors.runtime import BatchCommitter  # noqa: E402
from processors.training import synthetic, train  # noqa: E402
from processors.worker.sessions import session_options  # noqa: E402
from processors.worker.worker import EXACTLY_ONCE_PRODUCER  # noqa: E402
from schemas import AvroSerde  # noqa: E402
from schemas.registry import open_registry  # noqa: E402
from streams.broker import EmbeddedBroker, free_port  # noqa: E402
from streams.clients import make_admin, make_consumer, make_producer  # noqa: E402
from streams.settings import KafkaSettings  # noqa: E402
from streams.topics import TopicCatalog, TopicSpec, ensure_topics  # noqa: E402

SENT = "bench-sent-ns"
LOW_RATE = 1000.0   # a second latency point, far from saturation
TRIALS = 2


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------------------

def requests(data, model: str, n: int, dense: bool, serde: AvroSerde) -> list[tuple[bytes, bytes]]:
    names = [f.name for f in data.spec.numeric]
    out = []
    for i in range(n):
        row = data.numeric[i % len(data)]
        record = {"request_id": f"{model}-{i}", "entity_id": f"e{i % 1000}", "model": model,
                  "event_time": int(time.time() * 1000), "categorical": {}, "metadata": {},
                  "numeric": {} if dense else dict(zip(names, row.astype(np.float64).tolist())),
                  "dense": row.astype("<f4").tobytes() if dense else None}
        out.append((record["entity_id"].encode(), serde.encode(record)))
    return out


def preload(kafka, topic: str, messages) -> None:
    p = make_producer(kafka)
    for key, value in messages:
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)


def drain_reader(kafka, topic: str, expect: int, timeout: float = 300.0) -> tuple[float, float, int]:
    """Count committed records of a topic from the beginning: (first seen, last seen, count)."""
    c = make_consumer(kafka, "bench-reader-unused")
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    first = last = None
    n = 0
    deadline = time.monotonic() + timeout
    while n < expect and time.monotonic() < deadline:
        got = [m for m in c.consume(10000, 0.05) if m.error() is None]
        if got:
            now = time.perf_counter()
            first = first or now
            last = now
            n += len(got)
    c.close()
    return first or 0.0, last or 0.0, n


# -- (a) raw ONNX Runtime --------------------------------------------------------------------------

def raw_ort(onnx_bytes: bytes, matrix: np.ndarray, output: str, batch: int = 1000) -> float:
    s = ort.InferenceSession(onnx_bytes, session_options(1), providers=["CPUExecutionProvider"])
    batches = [np.ascontiguousarray(matrix[i:i + batch]) for i in range(0, len(matrix), batch)]
    s.run([output], {"input": batches[0]})
    started = time.perf_counter()
    rows = 0
    while time.perf_counter() - started < 2.0:
        for b in batches:
            s.run([output], {"input": b})
            rows += len(b)
    return rows / (time.perf_counter() - started)


# -- (b) passthrough -------------------------------------------------------------------------------

def passthrough(kafka, src: str, dst: str, n: int, max_batch: int = 1000) -> float:
    consumer = make_consumer(kafka, f"bench-pass-{src}")
    parts = consumer.list_topics(src, timeout=10).topics[src].partitions
    consumer.assign([TopicPartition(src, p, OFFSET_BEGINNING) for p in parts])
    committer = BatchCommitter(consumer, make_producer(kafka, transactional_id=f"bench-pass-{src}",
                                                       **EXACTLY_ONCE_PRODUCER))
    done = 0
    started = None
    while done < n:
        batch = [m for m in consumer.consume(max_batch, 0.1) if m.error() is None]
        if not batch:
            continue
        started = started or time.perf_counter()
        committer.begin()
        for m in batch:
            committer.produce(dst, m.value(), m.key(), m.headers())
        committer.commit(batch)
        done += len(batch)
    elapsed = time.perf_counter() - started
    consumer.close()
    return done / elapsed


# -- (c) naive worker ------------------------------------------------------------------------------

def naive(kafka, registry, src: str, dst: str, onnx_bytes: bytes, manifest, n: int) -> float:
    """What a tutorial writes: one message at a time, decode, predict, produce, commit."""
    consumer = make_consumer(kafka, f"bench-naive-{src}")
    parts = consumer.list_topics(src, timeout=10).topics[src].partitions
    consumer.assign([TopicPartition(src, p, OFFSET_BEGINNING) for p in parts])
    producer = make_producer(kafka)
    requests_serde = AvroSerde(registry, "InferenceRequest")
    predictions = AvroSerde(registry, "Prediction")
    session = ort.InferenceSession(onnx_bytes, session_options(1), providers=["CPUExecutionProvider"])
    names = [f.name for f in manifest.features.numeric]
    labels = manifest.output.labels
    done = 0
    started = None
    while done < n:
        msg = consumer.poll(0.1)
        if msg is None or msg.error() is not None:
            continue
        started = started or time.perf_counter()
        r = requests_serde.decode(msg.value())
        x = np.array([[r["numeric"][k] for k in names]], dtype=np.float32)
        p = session.run(["probabilities"], {"input": x})[0][0]
        top = int(p.argmax())
        prediction = {"request_id": r["request_id"], "entity_id": r["entity_id"], "model": r["model"],
                      "model_version": manifest.version, "role": "LIVE", "event_time": r["event_time"],
                      "predicted_at": int(time.time() * 1000), "label": labels[top], "value": None,
                      "scores": dict(zip(labels, p.astype(float).tolist())), "confidence": float(p[top]),
                      "flags": [], "numeric": r["numeric"], "categorical": r["categorical"], "feature_sources": {},
                      "inference_us": 0, "batch_size": 1}
        producer.produce(dst, predictions.encode(prediction), msg.key())
        producer.flush(10)
        consumer.commit(msg, asynchronous=False)
        done += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return done / elapsed


# -- (d) the worker, in its own process ------------------------------------------------------------

def start_worker(kafka, data_dir: Path, model: str, extra=()) -> subprocess.Popen:
    env = {**os.environ, "FLYWHEEL_BOOTSTRAP": kafka.bootstrap, "FLYWHEEL_TOPIC_PREFIX": kafka.topic_prefix,
           "FLYWHEEL_DATA_DIR": str(data_dir), "FLYWHEEL_METRICS_PORT": "0"}
    return subprocess.Popen([sys.executable, "-m", "flywheel", "worker", "--model", model,
                             "--instance-id", f"bench-{model}", *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(data_dir / f"{model}.log", "w"))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- latency at a fixed offered load --------------------------------------------------------------

def paced(kafka, topic: str, messages, rate: float, seconds: float, stamp: bool = True) -> None:
    p = make_producer(kafka)
    total = int(rate * seconds)
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        key, value = messages[i % len(messages)]
        p.produce(topic, value, key, headers=[(SENT, str(time.time_ns()).encode())])
        p.poll(0)
    p.flush(30)


def latency(kafka, send_topic: str, read_topic: str, messages, rate: float, seconds: float) -> tuple[np.ndarray, float]:
    """Send at `rate` for `seconds` with a send-time header; a read_committed reader of
    `read_topic` (positioned at its end first) records receive - send for each record. Returns the
    latencies (ms, warm-up dropped) and the share of sent records received within the phase + 1 s."""
    reader = make_consumer(kafka, "bench-lat-unused")
    parts = reader.list_topics(read_topic, timeout=10).topics[read_topic].partitions
    reader.assign([TopicPartition(read_topic, p, OFFSET_END) for p in parts])
    reader.consume(1, 0.5)  # settle the assignment before the load starts
    out: list[float] = []
    done = threading.Event()

    def read():
        while not done.is_set():
            # consume(n, timeout) waits for n records or the timeout: take what is there, else
            # block for the first record only (what the worker does too).
            got = reader.consume(1000, 0) or reader.consume(1, 0.05)
            for m in got:
                if m.error() is None:
                    now = time.time_ns()
                    sent = dict(m.headers() or ()).get(SENT)
                    if sent:
                        out.append((now - int(sent)) / 1e6)

    t = threading.Thread(target=read)
    t.start()
    paced(kafka, send_topic, messages, rate, seconds)
    time.sleep(1.0)
    done.set()
    t.join()
    reader.close()
    answered = len(out) / max(1, int(rate * seconds))
    skip = len(out) // 10  # warm-up
    return np.asarray(out[skip:]), answered


# -- the run ---------------------------------------------------------------------------------------

def bench_model(kafka, registry, data_dir: Path, models: ModelRegistry, name: str, kind: str, data, n: int,
                seconds: float, dense: bool) -> dict:
    catalog = TopicCatalog(kafka)
    t = train(name, "v1", data.numeric, data.target, data.spec, kind=kind)
    models.register(t.onnx_bytes, replace(t.manifest, model=name))
    ensure_topics(make_admin(kafka), catalog.for_model(name) + [
        TopicSpec(f"{kafka.topic_prefix}{name}.{s}", kafka.partitions, 1) for s in ("passout", "naive", "naiveout",
                                                                                      "hop")])
    serde = AvroSerde(registry, "InferenceRequest")
    msgs = requests(data, name, n, dense, serde)
    row = {"model": name}
    matrix = MatrixLayout(data.spec).build(data.numeric)
    row["a"] = raw_ort(t.onnx_bytes, matrix, "probabilities")
    log(f"{name}: (a) raw ORT {row['a']:,.0f} rows/s")

    naive_n = min(n, 3000)
    if not dense:
        preload(kafka, f"{kafka.topic_prefix}{name}.naive", msgs[:naive_n])
        row["c"] = naive(kafka, registry, f"{kafka.topic_prefix}{name}.naive", f"{kafka.topic_prefix}{name}.naiveout",
                         t.onnx_bytes, replace(t.manifest, model=name), naive_n)
        log(f"{name}: (c) naive {row['c']:,.0f} rec/s")

    # (b) and (d) alternate, TRIALS times each, and each keeps its best: on a shared machine the
    # best of a few runs is the closest estimate of what the code can do.
    row["b"] = row["d"] = 0.0
    worker = None
    for trial in range(TRIALS):
        serve = name if trial == 0 else f"{name}_{trial}"
        if trial:
            models.register(t.onnx_bytes, replace(t.manifest, model=serve))
            ensure_topics(make_admin(kafka), catalog.for_model(serve))
        src = f"{kafka.topic_prefix}{name}.pass{trial}"
        ensure_topics(make_admin(kafka), [TopicSpec(src, kafka.partitions, 1)])
        preload(kafka, src, msgs)
        b = passthrough(kafka, src, f"{kafka.topic_prefix}{name}.passout", n)
        log(f"{name}: (b) passthrough {b:,.0f} rec/s")
        preload(kafka, catalog.requests(serve), msgs)
        if worker is not None:
            stop(worker)
        worker = start_worker(kafka, data_dir, serve)
        first, last, count = drain_reader(kafka, catalog.predictions(serve), n)
        d = count / (last - first) if last > first else float("nan")
        log(f"{name}: (d) worker {d:,.0f} rec/s ({count} predictions)")
        row["b"], row["d"] = max(row["b"], b), max(row["d"], d)

    for key, rate in (("", row["d"] / 2), ("_low", LOW_RATE)):
        lat, row["answered" + key] = latency(kafka, catalog.requests(serve), catalog.predictions(serve), msgs, rate,
                                             seconds)
        hop, _ = latency(kafka, f"{kafka.topic_prefix}{name}.hop", f"{kafka.topic_prefix}{name}.hop", msgs, rate,
                         seconds)
        row["rate" + key] = rate
        row["lat" + key] = np.percentile(lat, [50, 95, 99]) if len(lat) else [float("nan")] * 3
        row["hop" + key] = np.percentile(hop, [50, 95, 99]) if len(hop) else [float("nan")] * 3
    row["rss"] = peak_rss_mb(worker.pid)
    stop(worker)
    log(f"{name}: latency p50/p95/p99 {row['lat']} vs hop {row['hop']} (worker answered {row['answered']:.0%} "
        f"within the phase + 1 s); at {LOW_RATE:g}/s {row['lat_low']} vs {row['hop_low']}; rss {row['rss']:.0f} MB")
    return row


def table(rows: list[dict]) -> str:
    out = ["| model | (a) raw ORT rows/s | (b) passthrough rec/s | (c) naive rec/s | (d) worker rec/s | d/b | d/c "
           "| half load rec/s | worker e2e p50/p95/p99 ms | broker hop p50/p95/p99 ms | p99 ratio "
           f"| at {LOW_RATE:,.0f}/s: worker p50/p95/p99 ms | hop p50/p95/p99 ms | p99 ratio | worker peak RSS MB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r.get("c")
        naive_rate = f"{c:,.0f}" if c else "-"
        d_over_c = f"{r['d'] / c:.1f}" if c else "-"
        out.append(f"| {r['model']} | {r['a']:,.0f} | {r['b']:,.0f} | {naive_rate} | {r['d']:,.0f} "
                   f"| {r['d'] / r['b']:.2f} | {d_over_c} | {r['rate']:,.0f} "
                   f"| {' / '.join(f'{v:.1f}' for v in r['lat'])} | {' / '.join(f'{v:.1f}' for v in r['hop'])} "
                   f"| {r['lat'][2] / r['hop'][2]:.2f} | {' / '.join(f'{v:.1f}' for v in r['lat_low'])} "
                   f"| {' / '.join(f'{v:.1f}' for v in r['hop_low'])} | {r['lat_low'][2] / r['hop_low'][2]:.2f} "
                   f"| {r['rss']:.0f} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=40000, help="records per throughput phase")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each latency phase")
    ap.add_argument("--only", choices=["mlp", "gbt"], help="one model only")
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
    load_before = os.getloadavg()[0]
    with EmbeddedBroker(free_port(), data_dir / "broker.log") as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix="bench.", partitions=4)
        registry = open_registry(None, data_dir)
        ensure_topics(make_admin(kafka), TopicCatalog(kafka).core())
        models = ModelRegistry(kafka, registry, data_dir, actor="bench")
        data = synthetic(20_000, n_numeric=32, seed=0)
        rows = []
        plan = [("mlp", "mlp", False), ("mlp_dense", "mlp", True), ("gbt", "gbt", False)]
        for name, kind, dense in plan:
            if args.only and kind != args.only:
                continue
            log(f"== {name}")
            rows.append(bench_model(kafka, registry, data_dir, models, name, kind, data, args.requests,
                                    args.seconds, dense))
        models.close()
    print(f"\nworker benchmark: {args.requests:,} records per throughput phase, latency at half of (d) and at "
          f"{LOW_RATE:,.0f}/s for {args.seconds:g}s each, 4 partitions, exactly-once, {os.cpu_count()} cores, "
          f"load average {load_before:.1f} at start and {os.getloadavg()[0]:.1f} at end\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
