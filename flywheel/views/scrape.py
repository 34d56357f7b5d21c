"""The stack's Prometheus endpoints, read twice and turned into figures: rates are the counters'
change between two scrapes, latency percentiles come from the histogram buckets that filled in
between (as Prometheus' histogram_quantile does), gauges are their latest value.

Metric names are the contract documented in processors/runtime/metrics.py and the processors'
metrics modules.
"""
import http.client
import os
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from flywheel.stack import ProcessSpec

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    process: str
    name: str                       # the sample's name, e.g. flywheel_records_in_total
    labels: Labels
    value: float

    def label(self, key: str) -> str:
        return dict(self.labels).get(key, "")


@dataclass
class Scrape:
    at: float                                           # time.monotonic() of the scrape
    samples: list[Sample] = field(default_factory=list)
    down: dict[str, str] = field(default_factory=dict)  # process -> why its endpoint did not answer
    exited: set[str] = field(default_factory=set)       # processes whose pid is gone

    def named(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]


def scrape(processes: list[ProcessSpec], timeout: float = 2.0) -> Scrape:
    out = Scrape(time.monotonic())
    for spec in processes:
        url = f"http://127.0.0.1:{spec.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:   # the last: not ours on that port
            out.down[spec.name] = str(getattr(e, "reason", e))
            if not _alive(spec.pid):
                out.exited.add(spec.name)
            continue
        for family in text_string_to_metric_families(text):
            out.samples += [Sample(spec.name, s.name, tuple(sorted(s.labels.items())), s.value)
                            for s in family.samples]
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


@dataclass
class ProcessFigures:
    name: str
    pid: int
    port: int
    state: str                                  # up | no metrics (running, endpoint silent) | exited
    restarts: int = 0                           # by the supervisor (stack.json)
    records_in_per_s: float = 0.0
    lag: int = 0
    records_out_per_s: float = 0.0              # only what produces without consuming (the simulator) says


@dataclass
class VersionFigures:
    model: str
    version: str
    role: str                                   # from flywheel_model_version_info ("" when not serving)
    predictions_per_s: float = 0.0
    predictions: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)   # the monitor's last closed window
    drift_flagged: bool | None = None


@dataclass
class Latency:
    p50: float | None
    p99: float | None
    observed: float                            # observations behind the percentiles


@dataclass
class LiveFigures:
    seconds: float                              # between the two scrapes
    processes: list[ProcessFigures]
    versions: list[VersionFigures]
    requests_in_per_s: dict[str, float]         # by model: records the inference workers consumed
    predictions_per_s: dict[str, float]         # by model
    latency: dict[str, Latency]                 # by model
    dead_letters: dict[str, float]              # by reason: totals
    dead_letters_per_s: float


def figures(processes: list[ProcessSpec], before: Scrape, after: Scrape) -> LiveFigures:
    seconds = max(after.at - before.at, 1e-9)
    rate = _rates(before, after, seconds)
    records_in, records_out, process_lag = defaultdict(float), defaultdict(float), defaultdict(float)
    for s in after.named("flywheel_records_in_total"):
        records_in[s.process] += rate.get(s, 0.0)
    for s in after.named("flywheel_records_out_total"):
        records_out[s.process] += rate.get(s, 0.0)
    for s in after.named("flywheel_consumer_lag"):
        process_lag[s.process] += s.value
    procs = [ProcessFigures(p.name, p.pid, p.metrics_port, _state(p.name, after), p.restarts, records_in[p.name],
                            int(process_lag[p.name]), records_out[p.name]) for p in processes]
    predictions = after.named("flywheel_predictions_total")
    return LiveFigures(
        seconds=seconds, processes=procs, versions=_versions(after, rate),
        requests_in_per_s=_rate_by(rate, [s for s in after.named("flywheel_records_in_total")
                                          if s.label("processor") == "worker"], "model"),
        predictions_per_s=_rate_by(rate, predictions, "model"),
        latency=_latencies(before, after),
        dead_letters=_sum_by(after.named("flywheel_dead_letters_total"), "reason"),
        dead_letters_per_s=sum(rate.get(s, 0.0) for s in after.named("flywheel_dead_letters_total")))


def _state(process: str, scraped: Scrape) -> str:
    if process in scraped.exited:
        return "exited"
    return "no metrics" if process in scraped.down else "up"


def _rates(before: Scrape, after: Scrape, seconds: float) -> dict[Sample, float]:
    """Per-second change of every sample between the scrapes. A series that appeared in between
    (a process's first records of a model) counts from zero, and so does a counter that went down
    (its process restarted); a process that did not answer the first scrape has no rates yet."""
    old = {(s.process, s.name, s.labels): s.value for s in before.samples}
    out = {}
    for s in after.samples:
        if s.process in before.down:
            continue
        previous = old.get((s.process, s.name, s.labels), 0.0)
        out[s] = (s.value - previous if s.value >= previous else s.value) / seconds
    return out


def _rate_by(rate: dict[Sample, float], samples: list[Sample], key: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for s in samples:
        out[s.label(key)] += rate.get(s, 0.0)
    return dict(out)


def _sum_by(samples: list[Sample], key: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for s in samples:
        out[s.label(key)] += s.value
    return dict(out)


def _versions(after: Scrape, rate: dict[Sample, float]) -> list[VersionFigures]:
    found: dict[tuple[str, str], VersionFigures] = {}

    def version(model: str, v: str, role: str = "") -> VersionFigures:
        figures = found.setdefault((model, v), VersionFigures(model, v, role))
        figures.role = figures.role or role
        return figures

    for s in after.named("flywheel_model_version_info"):
        if s.value:
            version(s.label("model"), s.label("version"), s.label("role"))
    for s in after.named("flywheel_predictions_total"):
        f = version(s.label("model"), s.label("version"))     # its role label is history, not the present
        f.predictions += s.value
        f.predictions_per_s += rate.get(s, 0.0)
    for s in after.named("flywheel_model_performance"):
        version(s.label("model"), s.label("version")).metrics[s.label("metric")] = s.value
    for s in after.named("flywheel_drift_flagged"):
        version(s.label("model"), s.label("version")).drift_flagged = bool(s.value)
    return sorted(found.values(), key=lambda f: (f.model, f.version))


def _latencies(before: Scrape, after: Scrape) -> dict[str, Latency]:
    """p50/p99 per model over the observations made between the scrapes; when none were made,
    over everything since the workers started (said by `observed`)."""
    now, then = _buckets(after), _buckets(before)
    out = {}
    for model, cumulative in now.items():
        delta = {le: count - then.get(model, {}).get(le, 0.0) for le, count in cumulative.items()}
        use = delta if delta and max(delta.values()) > 0 else cumulative
        total = max(use.values(), default=0.0)
        out[model] = Latency(quantile(0.5, use), quantile(0.99, use), total)
    return out


def _buckets(scraped: Scrape) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts per model, summed over the processes that export them."""
    out: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for s in scraped.named("flywheel_e2e_latency_seconds_bucket"):
        out[s.label("model")][float(s.label("le"))] += s.value
    return out


def quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q; a
    rank in the +Inf bucket answers with the highest finite bound."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            inside = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / inside if inside else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound
