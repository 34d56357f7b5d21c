"""Whole-stack benchmark: the highest request rate at which `flywheel up` keeps every processor's
consumer lag bounded, and what each process spends per record.

    .venv/bin/python benchmarks/bench_system.py [--rates 1000,2000,5000,10000,15000,20000,30000] [--hold 60]
    .venv/bin/python benchmarks/bench_system.py --rates 500,1000 --hold 10     # a check, under a minute

Starts `flywheel up` (no demo) on a fresh data dir and free ports, registers one model (an MLP on the
demo's churn concept, 3,000 rows) and runs a load generator in a process of its own: requests to
the model's requests topic at a target rate and, 1.5 s after each, its true label to `labels`. Both
are Avro in the Confluent framing, encoded once a second per pool of 1,024 rows (the schema ids are
the stack's) with each request id spliced into the bytes, unique within the run. After a warm-up at
100 requests/s (until every consuming processor has partitions and has caught up), the rate rises
step by step, each held for --hold seconds; the first rate the stack does not sustain ends the run.

A rate is sustained when every sample (one a second) taken after the first sixth of its hold (the
step up's transient) shows every processor under --bound seconds of traffic behind: its
`flywheel_consumer_lag` on its most-behind topic, in records, over the achieved request rate (each
topic on the path, requests, predictions, labels and feedback, carries one record per request);
and no process exited, restarted or stopped answering its metrics endpoint, and the generator sent
at least 95% of the target rate. Beside each processor's largest lag, its trend (least-squares slope
over the judged samples, seconds of traffic per minute) tells one that keeps up in bursts (flat)
from one falling behind (growing). Every sample is kept in the data dir's samples.jsonl.

CPU is utime + stime from /proc over the hold: per record consumed (`flywheel_records_in_total`:
the worker's requests, the joiner's predictions and labels, the monitor's predictions) and, for the
processes that count none (trigger, retrainer, rollout, the supervisor with its schema registry,
the broker, the load generator, this benchmark's sampling), per request sent; beside them, how
many cores the rest of the machine kept busy (/proc/stat): on a shared machine, others' work.

FLYWHEEL_BOOTSTRAP and FLYWHEEL_CASSANDRA_HOSTS run the same benchmark against Apache Kafka and
Cassandra, on a topic prefix and a keyspace of the run's own (left behind). Otherwise the stack
runs with its configuration (hour-long monitor windows), but for the trigger's automatic rules,
which are off unless the environment sets them (FLYWHEEL_TRIGGER_NEW_LABELS=10000 and so on): a
retrain, its canary and promotion would come in the first rate and are not the steady state. The
machine is shared: note its load average, printed with the tables.
"""
import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flywheel.processors.models import ModelRegistry  # noqa: E402
from flywheel.processors.simulator.bootstrap import ensure_model  # noqa: E402
from flywheel.processors.simulator.concept import Concept  # noqa: E402
from flywheel.schemas import AvroSerde  # noqa: E402
from flywheel.streams.clients import make_producer  # noqa: E402
from flywheel.streams.topics import TopicCatalog  # noqa: E402

from benchmarks.stack import await_stack, stack_env, start_stack, stop_stack  # noqa: E402
from flywheel.config import Config, load_config  # noqa: E402
from flywheel.stack import StackState  # noqa: E402
from flywheel.views.gather import live_kafka  # noqa: E402
from flywheel.views.scrape import Scrape, scrape  # noqa: E402
from flywheel.views.stackfile import read_stack  # noqa: E402
from flywheel.wiring import feature_store_for, schema_registry  # noqa: E402

MODEL = "bench"
POOL = 1024                     # feature rows the generator cycles through
LABEL_DELAY_S = 1.5
WARMUP_RATE = 100.0
SAMPLE_EVERY_S = 1.0
SHORTFALL = 0.95                # the generator must send this share of the target for a verdict
DEFAULT_RATES = "1000,2000,5000,10000,15000,20000,30000"

console = Console(stderr=True)


# -- the stack -------------------------------------------------------------------------------------

# The trigger's automatic rules, off: the new-labels rule alone asks for a retrain 10,000 labels in,
# during the first rate, and its training, canary and promotion (once an hour at most, the
# cooldown) are not the steady state a rate is judged on. The trigger still evaluates the model
# every interval, reading its feedback from the store.
NO_AUTOMATIC_RETRAIN = {f"FLYWHEEL_TRIGGER_{rule}": "0" for rule in
                        ("PERFORMANCE_THRESHOLD", "CHANGE_DELTA", "DRIFT_WINDOWS", "NEW_LABELS", "MAX_AGE_SECONDS")}


def register_model(config: Config) -> None:
    """The first version of MODEL, which the running worker picks up from the `models` topic."""
    with feature_store_for(config) as store:
        models = ModelRegistry(config.kafka, schema_registry(config), config.data_dir, actor="bench")
        try:
            ensure_model(models, store, MODEL, Concept(), rows=3000)
        finally:
            models.close()


# -- the load generator (a process of its own) -----------------------------------------------------

SPAWN = multiprocessing.get_context("spawn")     # no fork of a process holding Kafka clients' threads


@dataclass
class LoadControl:
    """Shared with the generator: the rate it aims at (negative: stop), what it has sent, and how
    many of its records the broker refused. Each value has one writer, so no locks."""
    rate: object
    requests: object
    failed: object

    @classmethod
    def shared(cls) -> "LoadControl":
        return cls(SPAWN.Value("d", 0.0, lock=False), SPAWN.Value("q", 0, lock=False), SPAWN.Value("q", 0, lock=False))


@dataclass(frozen=True)
class Template:
    """An encoded record with its request id cut out; `value(rid)` splices one back in."""
    key: bytes | None
    head: bytes
    tail: bytes

    def value(self, request_id: bytes) -> bytes:
        return self.head + request_id + self.tail


def templates(serde: AvroSerde, records: list[dict], placeholder: str, keys: list[bytes | None]) -> list[Template]:
    out = []
    for record, key in zip(records, keys):
        head, tail = serde.encode({**record, "request_id": placeholder}).split(placeholder.encode())
        out.append(Template(key, head, tail))
    return out


@dataclass
class Pools:
    """The generator's rows, encoded again each second so event and label times stay current."""
    serdes: tuple[AvroSerde, AvroSerde]          # InferenceRequest, GroundTruth
    rows: list[tuple[dict, dict]]                # (numeric, categorical) per row
    truth: list[str]
    placeholder: str

    def encode(self, now_ms: int) -> tuple[list[Template], list[Template]]:
        requests = [{"entity_id": f"e{i:04d}", "model": MODEL, "event_time": now_ms, "numeric": numeric,
                     "categorical": categorical, "dense": None, "metadata": {}}
                    for i, (numeric, categorical) in enumerate(self.rows)]
        labels = [{"model": MODEL, "label": t, "value": None, "labelled_at": now_ms, "source": "bench"}
                  for t in self.truth]
        return (templates(self.serdes[0], requests, self.placeholder, [r["entity_id"].encode() for r in requests]),
                templates(self.serdes[1], labels, self.placeholder, [None] * len(labels)))


def pools(config: Config, id_width: int) -> Pools:
    registry = schema_registry(config)
    concept = Concept()
    data = concept.sample(POOL, np.random.default_rng(1))
    rows = [concept.spec.split(row) for row in data.rows()]
    return Pools((AvroSerde(registry, "InferenceRequest"), AvroSerde(registry, "GroundTruth")), rows,
                 [str(t) for t in data.target], "#" * id_width)


def generate(config: Config, control: LoadControl, run: str) -> None:
    """Send requests at `control.rate` and each one's label LABEL_DELAY_S later, in the bursts due
    every millisecond (a sleep per record would take a core of its own), until the rate is negative."""
    prefix = run.encode()

    def ids(n: int) -> bytes:         # unique within the run, and of one width, as the templates need
        return b"%s%016d" % (prefix, n)

    source = pools(config, len(ids(0)))
    catalog = TopicCatalog(config.kafka)
    requests_topic, labels_topic = catalog.requests(MODEL), catalog.labels
    producer = make_producer(config.kafka, **{
        "linger.ms": 20,     # full batches: the embedded broker slows down on many tiny ones
        "delivery.report.only.error": True, "on_delivery": lambda err, _: _count_failure(control, err)})
    sent, step_start, step_base, rate = 0, time.monotonic(), 0, 0.0
    labels_due: deque[tuple[float, int, int]] = deque()     # (due, first request, end)
    refresh_at = 0.0
    while control.rate.value >= 0:
        now = time.monotonic()
        if now >= refresh_at:
            requests, labels = source.encode(int(time.time() * 1000))
            refresh_at = now + 1.0
        if control.rate.value != rate:
            rate, step_start, step_base = control.rate.value, now, sent
        due = step_base + int((now - step_start) * rate)
        if due > sent:
            for n in range(sent, due):
                t = requests[n % POOL]
                _produce(producer, requests_topic, t.value(ids(n)), t.key)
            labels_due.append((now + LABEL_DELAY_S, sent, due))
            sent = control.requests.value = due
        while labels_due and labels_due[0][0] <= now:
            _, first, end = labels_due.popleft()
            for n in range(first, end):
                request_id = ids(n)
                _produce(producer, labels_topic, labels[n % POOL].value(request_id), request_id)
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)


def _count_failure(control: LoadControl, err) -> None:
    if err is not None:
        control.failed.value += 1


def _produce(producer, topic: str, value: bytes, key: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:          # the client's queue is full: let it deliver
            producer.poll(0.01)


# -- measuring -------------------------------------------------------------------------------------

@dataclass
class Sample:
    """One look at the stack."""
    at: float                                    # time.monotonic()
    sent: int                                    # requests the generator has sent
    lag: dict[str, int]                          # process -> records behind on its most-behind topic
    records_in: dict[str, float]                 # process -> records consumed, cumulative
    cpu: dict[str, float]                        # process -> CPU seconds, cumulative
    restarts: dict[str, int]                     # process -> restarts by the supervisor
    down: list[str] = field(default_factory=list)   # processes whose endpoint did not answer
    machine_cpu: float = 0.0                     # CPU seconds every core of the machine was busy, cumulative


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")     # utime, stime


def machine_cpu_seconds() -> float:
    """Busy time of the whole machine (/proc/stat: all but idle and iowait): on a shared machine
    what the stack did not use, others did."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def broker_pid(state: StackState) -> int | None:
    """The embedded broker: the supervisor's child that is none of its processors."""
    processors = {p.pid for p in state.processes}
    try:
        children = Path(f"/proc/{state.pid}/task/{state.pid}/children").read_text().split()
    except FileNotFoundError:
        return None
    return next((int(c) for c in children if int(c) not in processors), None)


def most_behind(scraped: Scrape) -> dict[str, int]:
    """Per process, the lag of its most-behind topic (summed over that topic's partitions)."""
    by_topic: dict[tuple[str, str], float] = defaultdict(float)
    for s in scraped.named("flywheel_consumer_lag"):
        by_topic[(s.process, s.label("topic"))] += s.value
    out: dict[str, int] = {}
    for (process, _), lag in by_topic.items():
        out[process] = max(out.get(process, 0), int(lag))
    return out


def per_process(scraped: Scrape, name: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for s in scraped.named(name):
        out[s.process] += s.value
    return dict(out)


@dataclass
class Probe:
    """Where one looks at the running stack: its endpoints and stack.json in the data dir, the
    generator's counters, and the pids of processes stack.json does not list."""
    data_dir: Path
    control: LoadControl
    others: dict[str, int]                       # broker, supervisor, generator, this benchmark

    def sample(self) -> Sample:
        state = read_stack(self.data_dir)
        scraped = scrape(state.processes)
        pids = {p.name: p.pid for p in state.processes} | self.others
        cpu = {name: seconds for name, pid in pids.items() if (seconds := cpu_seconds(pid)) is not None}
        return Sample(scraped.at, self.control.requests.value, most_behind(scraped),
                      per_process(scraped, "flywheel_records_in_total"), cpu,
                      {p.name: p.restarts for p in state.processes}, sorted(scraped.down), machine_cpu_seconds())


@dataclass
class StepResult:
    target: float
    achieved: float
    max_lag_s: dict[str, float]                  # processes with a consumer lag
    lag_trend: dict[str, float]                  # their lag's slope, seconds of traffic per minute
    cpu_us_per_record: dict[str, float]          # processes that count records in
    cpu_us_per_request: dict[str, float]         # the others
    cores: float                                 # CPU seconds of every timed process per second
    other_cores: float                           # the rest of the machine's busy CPU per second
    failures: list[str]                          # why it is not sustained; empty when it is

    @property
    def sustained(self) -> bool:
        return not self.failures


def judge(target: float, samples: list[Sample], settle_s: float, bound_s: float) -> StepResult:
    """The verdict on one hold from its samples (the first taken as it began)."""
    first, last = samples[0], samples[-1]
    seconds = last.at - first.at
    achieved = (last.sent - first.sent) / seconds
    judged = [s for s in samples if s.at - first.at >= settle_s]
    lagging = sorted({p for s in samples for p in s.lag})
    behind = {p: [s.lag.get(p, 0) / max(achieved, 1e-9) for s in judged] for p in lagging}
    max_lag = {p: max(series) for p, series in behind.items()}
    trend = {p: trend_per_minute([s.at for s in judged], series) for p, series in behind.items()}
    failures = [f"{p} {lag:.1f}s behind" for p, lag in max_lag.items() if lag >= bound_s]
    failures += [f"{p} stopped reporting lag" for p in lagging
                 if any(p not in s.lag and p not in s.down for s in judged)]
    failures += [f"{p} restarted" for p, n in last.restarts.items() if n != first.restarts.get(p, n)]
    failures += [f"{p} did not answer" for p in sorted({p for s in judged for p in s.down})]
    if achieved < SHORTFALL * target:
        failures.append(f"generator sent {achieved / target:.0%} of the target")
    cpu = {p: last.cpu[p] - first.cpu[p] for p in last.cpu if p in first.cpu}
    records = {p: last.records_in.get(p, 0.0) - first.records_in.get(p, 0.0) for p in cpu}
    requests = max(last.sent - first.sent, 1)
    return StepResult(target, achieved, max_lag, trend,
                      {p: 1e6 * cpu[p] / records[p] for p in cpu if records[p] > 0},
                      {p: 1e6 * cpu[p] / requests for p in cpu if records[p] <= 0},
                      sum(cpu.values()) / seconds,
                      (last.machine_cpu - first.machine_cpu - sum(cpu.values())) / seconds, failures)


def trend_per_minute(times: list[float], values: list[float]) -> float:
    """The least-squares slope of `values` per minute: a lag over the bound that does not grow is
    a processor keeping up in bursts; one that grows is falling behind."""
    if len(times) < 2:
        return 0.0
    return 60 * float(np.polyfit(times, values, 1)[0])


def hold(probe: Probe, rate: float, seconds: float, bound_s: float, progress: Progress) -> StepResult:
    """Send `rate` for `seconds`, sampling every SAMPLE_EVERY_S; judged after the first sixth."""
    probe.control.rate.value = rate
    samples = [probe.sample()]
    task = progress.add_task(f"{rate:>9,.0f} req/s", total=seconds, status="")
    while samples[-1].at - samples[0].at < seconds:
        time.sleep(max(0.0, samples[-1].at + SAMPLE_EVERY_S - time.monotonic()))
        samples.append(probe.sample())
        s, before = samples[-1], samples[-2]
        sent_rate = (s.sent - before.sent) / (s.at - before.at)
        lags = "  ".join(f"{p} {lag / max(sent_rate, 1):.1f}s" for p, lag in sorted(s.lag.items()))
        progress.update(task, completed=min(seconds, s.at - samples[0].at),
                        status=f"sending {sent_rate:,.0f}/s  behind: {lags}")
    result = judge(rate, samples, seconds / 6, bound_s)
    with open(probe.data_dir / "samples.jsonl", "a") as out:    # the series behind a verdict
        out.writelines(json.dumps({"rate": rate, **asdict(s)}) + "\n" for s in samples)
    progress.update(task, status=f"sent {result.achieved:,.0f}/s: "
                                 f"{'sustained' if result.sustained else '; '.join(result.failures)}")
    return result


def warm_up(probe: Probe, timeout: float = 180.0) -> list[str]:
    """Send WARMUP_RATE until the consuming processors stop changing and have caught up: every
    process that counted records reports a lag, under a second of traffic, for five samples in a
    row. Returns the consuming processes."""
    probe.control.rate.value = WARMUP_RATE
    deadline, steady, last = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        time.sleep(SAMPLE_EVERY_S)
        s = probe.sample()
        consuming = sorted(p for p, n in s.records_in.items() if n > 0)
        ready = bool(consuming) and set(consuming) <= set(s.lag) and max(s.lag.values()) < WARMUP_RATE and not s.down
        steady = steady + 1 if ready and consuming == last else 0
        last = consuming
        if steady >= 5:
            return consuming
    raise SystemExit(f"the stack did not settle at {WARMUP_RATE:g} requests/s in {timeout:g}s: "
                     f"see the logs in {probe.data_dir}")


# -- report ----------------------------------------------------------------------------------------

def lag_table(results: list[StepResult]) -> str:
    names = sorted({p for r in results for p in r.max_lag_s})
    out = ["| target req/s | achieved req/s | " + " | ".join(f"{p} max lag s (trend /min)" for p in names)
           + " | verdict |",
           "|---:|---:|" + "---:|" * len(names) + "---|"]
    for r in results:
        lags = " | ".join(f"{r.max_lag_s[p]:.2f} ({r.lag_trend[p]:+.2f})" if p in r.max_lag_s else "-" for p in names)
        out.append(f"| {r.target:,.0f} | {r.achieved:,.0f} | {lags} | "
                   f"{'sustained' if r.sustained else '; '.join(r.failures)} |")
    return "\n".join(out)


def cpu_table(results: list[StepResult]) -> str:
    per_record = sorted({p for r in results for p in r.cpu_us_per_record})
    per_request = sorted({p for r in results for p in r.cpu_us_per_request} - set(per_record))
    head = [f"{p} µs/record" for p in per_record] + [f"{p} µs/request" for p in per_request]
    out = ["| target req/s | " + " | ".join(head) + " | cores busy | rest of the machine's cores |",
           "|---:|" + "---:|" * (len(head) + 2)]
    for r in results:
        cells = [_us(r.cpu_us_per_record.get(p)) for p in per_record] + [_us(r.cpu_us_per_request.get(p))
                                                                           for p in per_request]
        out.append(f"| {r.target:,.0f} | " + " | ".join(cells) + f" | {r.cores:.2f} | {r.other_cores:.2f} |")
    return "\n".join(out)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def log_troubles(data_dir: Path) -> list[str]:
    """Per log of the stack, how many tracebacks it holds: a processor that crashed under load."""
    out = []
    for log in sorted(data_dir.glob("*.log")):
        count = log.read_text(errors="replace").count("Traceback")
        if count:
            out.append(f"{log.name}: {count} traceback(s)")
    return out


# -- main ------------------------------------------------------------------------------------------

def rates(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of rates") from None
    if not values or min(values) <= 0 or values != sorted(values):
        raise argparse.ArgumentTypeError(f"{text!r}: rates must be positive and rising")
    return values


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=rates, default=rates(DEFAULT_RATES), metavar="R,R,…",
                    help=f"requests per second, rising, one hold each (default {DEFAULT_RATES})")
    ap.add_argument("--hold", type=float, default=60.0, metavar="SECONDS", help="length of each rate (default 60)")
    ap.add_argument("--bound", type=float, default=2.0, metavar="SECONDS",
                    help="largest lag, in seconds of traffic, a sustained rate allows (default 2)")
    return ap.parse_args()


def main() -> int:
    args = arguments()
    run = uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix="flywheel-bench-system-"))
    env = stack_env(data_dir, run, NO_AUTOMATIC_RETRAIN)
    config = load_config(env=env)
    with feature_store_for(config) as store:
        store.migrate()              # a Cassandra keyspace of the run's own needs its tables first
    load_before = os.getloadavg()
    console.print(f"data dir {data_dir} (kept: logs, store, samples.jsonl)")
    up = start_stack(env, data_dir, MODEL)
    control = LoadControl.shared()
    generator = None
    results: list[StepResult] = []
    try:
        state = await_stack(up, data_dir)
        config = replace(config, kafka=live_kafka(config, state))
        console.print(f"stack up: {', '.join(p.name for p in state.processes)} on {state.bootstrap}; "
                      f"registering {MODEL}…")
        register_model(config)
        generator = SPAWN.Process(target=generate, args=(config, control, run), daemon=True)   # dies with us
        generator.start()
        probe = Probe(data_dir, control, {"supervisor": state.pid, "generator": generator.pid, "bench": os.getpid()})
        if (broker := broker_pid(state)) is not None:
            probe.others["broker"] = broker
        consuming = warm_up(probe)
        console.print(f"warmed up at {WARMUP_RATE:g} req/s; consuming: {', '.join(consuming)}")
        with Progress(TextColumn("{task.description}"), BarColumn(bar_width=20), TimeElapsedColumn(),
                      TextColumn("{task.fields[status]}"), console=console) as progress:
            for rate in args.rates:
                results.append(hold(probe, rate, args.hold, args.bound, progress))
                if not results[-1].sustained:
                    break
        restarts = {p.name: p.restarts for p in read_stack(data_dir).processes if p.restarts}
    finally:
        control.rate.value = -1
        if generator is not None:
            generator.join(60)
        stop_stack(up)
    report(args, results, load_before, config, restarts, control.failed.value, data_dir)
    return 0


def report(args, results: list[StepResult], load_before, config: Config, restarts: dict[str, int],
           failed: int, data_dir: Path) -> None:
    sustained = [r.target for r in results if r.sustained]
    broker = f"Apache Kafka at {config.kafka.bootstrap}" if os.environ.get("FLYWHEEL_BOOTSTRAP") else "embedded Tansu"
    store = "Cassandra" if os.environ.get("FLYWHEEL_CASSANDRA_HOSTS") else "SQLite"
    print(f"\nwhole stack ({broker}, {store} store), {args.hold:g}s per rate, judged after the first "
          f"{args.hold / 6:.1f}s, bound {args.bound:g}s of traffic; {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' for v in load_before)} at start, "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at end\n")
    print(lag_table(results))
    print()
    print(cpu_table(results))
    print(f"\nhighest sustained rate: {f'{max(sustained):,.0f} requests/s' if sustained else 'none'}")
    if failed:
        print(f"{failed:,} records the broker refused the generator")
    for line in [f"{p} restarted {n} time(s)" for p, n in restarts.items()] + log_troubles(data_dir):
        print(line)


if __name__ == "__main__":
    sys.exit(main())
