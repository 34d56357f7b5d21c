"""The long soak of the embedded stack: `flywheel up --demo` at each given rate for a while,
sampled every `--every` seconds into a CSV (broker CPU and RSS and every process's RSS from
/proc, every processor's lag and records in per second, request -> prediction latency p50/p99
from the processors' /metrics, the topics the broker holds), then a plot (PNG) and a summary
(Markdown).

Run through bin/soak, which documents the flags. Every stack gets ports and a data dir of its
own, never the defaults, so a soak runs beside a developer's stack.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from flywheel.streams.broker import free_port, port_is_free

from flywheel.views.scrape import figures, scrape
from flywheel.views.stackfile import read_stack

TICK = os.sysconf("SC_CLK_TCK")
PROCESSORS = ("worker", "joiner", "monitor")


@dataclass
class Row:
    rate: float
    minute: float
    broker_cpu: float          # cores, over the last interval
    broker_ms_per_request: float | None   # broker CPU per request served: comparable on a shared machine
    broker_rss_mb: float
    topics: int | None         # topics the broker holds (generations included)
    worker_rps: float
    worker_lag: int
    joiner_lag: int
    monitor_lag: int
    p50_ms: float | None
    p99_ms: float | None
    process_rss_mb: str = "{}"   # JSON: each process of the stack -> its RSS (MB)
    own_p99_ms: float | None = None   # the user's own model beside the demo (--own-model)

    def rss(self) -> dict[str, float]:
        return json.loads(self.process_rss_mb)


def cpu_seconds(pid: int) -> float:
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_rss(processes) -> str:
    """Every running process's RSS, by name, as the CSV column holds it."""
    found = {}
    for spec in processes:
        try:
            found[spec.name] = round(rss_mb(spec.pid), 1)
        except OSError:          # restarting between the stack file and /proc: a gap, not an error
            continue
    return json.dumps(found, sort_keys=True)


def broker_pid(parent: int) -> int | None:
    """The tansu process the stack `parent` started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"tansu" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except (OSError, ValueError):
            continue
    return None


METRICS_PORTS = 16               # the supervisor's metrics port, then one per processor after it


@dataclass(frozen=True)
class Ports:
    broker: int
    registry: int
    console: int
    metrics: int                 # the first of METRICS_PORTS

    @classmethod
    def from_base(cls, base: int) -> "Ports":
        """Ports in a row from `base` (outside the ephemeral range, where a port found free now
        may be an outgoing connection's by the time the stack binds it); 0: any free ones."""
        if not base:
            return cls(free_port(), free_port(), free_port(), free_port_block(METRICS_PORTS))
        ports = cls(base, base + 1, base + 2, base + 3)
        busy = [port for port in range(base, base + 3 + METRICS_PORTS) if not port_is_free(port)]
        if busy:
            raise SystemExit(f"port {busy[0]} is in use: choose another --port-base")
        return ports


def free_port_block(count: int) -> int:
    """The first of `count` free ports in a row."""
    while True:
        port = free_port()
        if port + count < 65536 and all(port_is_free(port + i) for i in range(count)):
            return port


def start_stack(rate: float, data_dir: Path, ports: Ports) -> tuple[subprocess.Popen, str]:
    with open(data_dir / "up.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flywheel", "--data-dir", str(data_dir), "up", "--demo", "--speed", "5",
             "--rate", str(rate), "--broker-port", str(ports.broker), "--registry-port", str(ports.registry),
             "--metrics-port", str(ports.metrics)],
            env={**os.environ, "FLYWHEEL_CONSOLE_PORT": str(ports.console)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"127.0.0.1:{ports.broker}"


def start_own_model(rate: float, data_dir: Path, ports: Ports) -> subprocess.Popen:
    """The user's own model beside the demo (benchmarks/own_model_load.py), against this stack."""
    env = {**os.environ, "FLYWHEEL_DATA_DIR": str(data_dir), "FLYWHEEL_BOOTSTRAP": f"127.0.0.1:{ports.broker}",
           "FLYWHEEL_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{ports.registry}"}
    with open(data_dir / "own-model.log", "ab") as log:
        return subprocess.Popen([sys.executable, str(Path(__file__).with_name("own_model_load.py")),
                                 "--rate", str(rate)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def soak(rate: float, minutes: float, every: float, out: Path, on_row, port_base: int = 0,
         own_rate: float = 0.0) -> None:
    data_dir = out / f"data-{rate:g}"
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = Ports.from_base(port_base)
    proc, bootstrap = start_stack(rate, data_dir, ports)
    own = None
    try:
        deadline = time.monotonic() + 120
        while (state := read_stack(data_dir)) is None or (pid := broker_pid(proc.pid)) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the stack did not start (see {data_dir / 'up.log'})")
            time.sleep(1)
        own = start_own_model(own_rate, data_dir, ports) if own_rate else None
        admin = AdminClient({"bootstrap.servers": bootstrap})
        started, before, cpu_before = time.monotonic(), scrape(state.processes), cpu_seconds(pid)
        while time.monotonic() - started < minutes * 60 and proc.poll() is None:
            time.sleep(every)
            state = read_stack(data_dir) or state
            after, cpu_after = scrape(state.processes), cpu_seconds(pid)
            on_row(sample(rate, started, before, after, state.processes, cpu_after - cpu_before, pid, admin))
            before, cpu_before = after, cpu_after
    finally:
        if own is not None:
            own.terminate()
        proc.terminate()
        proc.wait(60)


def sample(rate, started, before, after, processes, cpu, pid, admin) -> Row:
    live = figures(processes, before, after)
    lag = {p.name: p.lag for p in live.processes}
    latency, own = live.latency.get("churn"), live.latency.get("tumour")
    served = sum(live.requests_in_per_s.values())
    return Row(rate, round((after.at - started) / 60, 2), round(cpu / live.seconds, 3),
               round(cpu * 1000 / (served * live.seconds), 3) if served else None, round(rss_mb(pid), 1),
               topic_count(admin), round(served, 1),
               *(lag.get(name, 0) for name in PROCESSORS),
               _ms(latency and latency.p50), _ms(latency and latency.p99), process_rss(processes),
               _ms(own and own.p99))


def topic_count(admin: AdminClient) -> int | None:
    try:
        return len(admin.list_topics(timeout=10).topics)
    except KafkaException:       # a busy broker: a gap in the plot, not the end of the soak
        return None


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("broker_cpu", "broker CPU (cores)"), ("broker_ms_per_request", "broker CPU per request (ms)"),
              ("broker_rss_mb", "broker RSS (MB)"),
              ("worker_rps", "worker records/s"), ("worker_lag", "worker lag (records)"),
              ("p99_ms", "request -> prediction p99 (ms)"), ("own_p99_ms", "own model's p99 (ms)"),
              ("topics", "topics held")]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(9, 2.2 * (len(panels) + 1)), sharex=True)
    for ax, (name, title) in zip(axes, panels):
        for rate in sorted({r.rate for r in rows}):
            mine = [r for r in rows if r.rate == rate and getattr(r, name) is not None]
            ax.plot([r.minute for r in mine], [getattr(r, name) for r in mine], label=f"{rate:g} req/s")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _plot_processes(axes[-1], rows)
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _plot_processes(ax, rows: list[Row]) -> None:
    for rate in sorted({r.rate for r in rows}):
        mine = [r for r in rows if r.rate == rate]
        for name in sorted({n for r in mine for n in r.rss()}):
            points = [(r.minute, r.rss()[name]) for r in mine if name in r.rss()]
            ax.plot(*zip(*points), label=f"{name} ({rate:g}/s)", linewidth=1)
    ax.set_title("processes' RSS (MB)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=4)


SUMMARY_COLUMNS = ("broker_cpu", "broker_ms_per_request", "broker_rss_mb", "topics", "worker_rps", "worker_lag",
                   "p50_ms", "p99_ms", "own_p99_ms")


def summary(rows: list[Row]) -> str:
    """Per rate and quarter of the run: the medians, so flat (or not) reads at a glance."""
    lines = ["| rate | minutes | broker CPU | ms/request | RSS MB | topics | worker rec/s | worker lag | p50 ms | "
             "p99 ms | own model p99 ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rate in sorted({r.rate for r in rows}):
        mine = [r for r in rows if r.rate == rate]
        for q in range(4):
            part = mine[q * len(mine) // 4:(q + 1) * len(mine) // 4]
            if not part:
                continue
            med = {name: _median([getattr(r, name) for r in part]) for name in SUMMARY_COLUMNS}
            lines.append(f"| {rate:g} | {part[0].minute:.0f}-{part[-1].minute:.0f} | {med['broker_cpu']:.2f} | "
                         f"{med['broker_ms_per_request']:.2f} | "
                         f"{med['broker_rss_mb']:.0f} | {med['topics']:.0f} | {med['worker_rps']:.0f} | "
                         f"{med['worker_lag']:.0f} | {med['p50_ms']:.0f} | {med['p99_ms']:.0f} | "
                         f"{med['own_p99_ms']:.0f} |")
    return "\n".join(lines) + "\n\n" + memory_summary(rows)


def memory_summary(rows: list[Row]) -> str:
    """Per rate and process: median RSS in each quarter, and the change from the second quarter
    (after warm-up) to the last."""
    lines = ["| rate | process | RSS MB by quarter | Q2 -> Q4 |", "|---|---|---|---|"]
    for rate in sorted({r.rate for r in rows}):
        mine = [r for r in rows if r.rate == rate]
        quarters = [mine[q * len(mine) // 4:(q + 1) * len(mine) // 4] for q in range(4)]
        for name in sorted({n for r in mine for n in r.rss()}):
            med = [_median([r.rss().get(name) for r in part]) for part in quarters]
            change = f"{(med[3] / med[1] - 1) * 100:+.0f}%" if med[1] and med[1] == med[1] else "–"
            lines.append(f"| {rate:g} | {name} | {' / '.join(f'{m:.0f}' for m in med)} | {change} |")
    return "\n".join(lines) + "\n"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _median(values: list) -> float:
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else float("nan")


def read_rows(path: Path) -> list[Row]:
    """The rows of a soak's CSV (to redraw the plot of a run still going, or one cut short)."""
    with open(path, newline="") as f:
        return [Row(**{"broker_ms_per_request": None,   # not in the CSVs of older runs
                       **{k: v if k == "process_rss_mb" else _number(v) for k, v in line.items()}})
                for line in csv.DictReader(f)]


def _number(text: str) -> int | float | None:
    if text == "":
        return None
    return float(text) if "." in text else int(text)


def report(rows: list[Row], out: Path) -> None:
    plot(rows, out / "soak.png")
    (out / "soak.md").write_text(summary(rows))
    print(summary(rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="100,500", help="requests/s, one stack after another (default 100,500)")
    p.add_argument("--minutes", type=float, default=120, help="per rate (default 120)")
    p.add_argument("--every", type=float, default=30, help="seconds between samples (default 30)")
    p.add_argument("--out", type=Path, default=Path("soak-out"), help="CSV, PNG, summary and data dirs")
    p.add_argument("--port-base", type=int, default=0, metavar="PORT",
                   help="broker, registry and console on PORT, PORT+1, PORT+2, metrics from PORT+3 "
                        f"({METRICS_PORTS} ports); default: any free ports")
    p.add_argument("--own-model", type=float, default=0.0, metavar="RATE",
                   help="also import a scikit-learn model of your own and send it RATE labelled requests/s")
    p.add_argument("--replot", action="store_true", help="only redraw the PNG and summary from OUT/soak.csv")
    args = p.parse_args(argv)
    if args.replot:
        report(read_rows(args.out / "soak.csv"), args.out)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with open(args.out / "soak.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, [x.name for x in fields(Row)])
        writer.writeheader()

        def on_row(row: Row) -> None:
            rows.append(row)
            writer.writerow(asdict(row))
            f.flush()
            print(row, flush=True)
        for rate in [float(r) for r in args.rates.split(",")]:
            soak(rate, args.minutes, args.every, args.out, on_row, args.port_base, args.own_model)
    report(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
