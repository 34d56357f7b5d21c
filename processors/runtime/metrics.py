"""Prometheus metrics every processor exports, on a registry the processor owns.

Metric names are a contract (Grafana dashboards and alert rules in infra/ are built on them):
  flywheel_records_in_total{processor,model}        records consumed
  flywheel_dead_letters_total{processor,reason}     records sent to `deadletter`
  flywheel_review_items_total{model,reason}         items sent to `review` (one per reason)
  flywheel_consumer_lag{processor,topic,partition}  high watermark minus position
Processor-specific metrics (the worker's predictions, batch sizes, ORT time, review items over
its budget in flywheel_review_dropped_total{model,reason}...) are created on the same registry by
the processor itself.
"""
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily


@dataclass
class ProcessorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self):
        r = self.registry
        self.records_in = Counter("flywheel_records_in", "Records consumed", ["processor", "model"], registry=r)
        self.dead_letters = Counter("flywheel_dead_letters", "Records sent to the dead-letter topic",
                                    ["processor", "reason"], registry=r)
        self.review_items = Counter("flywheel_review_items", "Items sent to the review topic, one per reason",
                                    ["model", "reason"], registry=r)
        self.consumer_lag = Gauge("flywheel_consumer_lag", "High watermark minus the consumer's position",
                                  ["processor", "topic", "partition"], registry=r)


def start_metrics_server(port: int, registry: CollectorRegistry, addr: str = "127.0.0.1"):
    """Serve /metrics for this registry only (not the process-global default registry).
    Port 0 disables the endpoint. Returns (server, thread) or None."""
    if not port:
        return None
    return start_http_server(port, addr=addr, registry=registry)


class BulkHistogram:
    """A Prometheus histogram fed a whole batch of observations at once (numpy), exported
    through a collector on the given registry. prometheus_client's Histogram takes one value
    per call under a lock, which costs more than the rest of a record's hot path."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], buckets: tuple[float, ...],
                 registry: CollectorRegistry):
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._series: dict[tuple[str, ...], list] = {}  # labels -> [bucket counts, sum]
        registry.register(self)

    def observe_many(self, labels: tuple[str, ...], values) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return
        counts = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds) + 1)
        series = self._series.setdefault(tuple(labels), [np.zeros(len(self.bounds) + 1, dtype=np.int64), 0.0])
        series[0] += counts
        series[1] += float(values.sum())

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        self.observe_many(labels, [value])

    def collect(self):
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, (counts, total) in list(self._series.items()):
            cumulative = np.cumsum(counts)
            buckets = [(_bound(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1])]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric(list(labels), buckets, total)
        yield family


def _bound(value: float) -> str:
    return repr(float(value))
