"""Prometheus metrics every processor exports, on a registry the processor owns.

Metric names are a contract (Grafana dashboards and alert rules in infra/ are built on them):
  flywheel_records_in_total{processor,model}        records consumed
  flywheel_dead_letters_total{processor,reason}     records sent to `deadletter`
  flywheel_review_items_total{model,reason}         items sent to `review` (one per reason)
  flywheel_consumer_lag{processor,topic,partition}  high watermark minus position
Processor-specific metrics (the worker's predictions, batch sizes, ORT time...) are created on
the same registry by the processor itself.
"""
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


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


def start_metrics_server(port: int, registry: CollectorRegistry, addr: str = "0.0.0.0"):
    """Serve /metrics for this registry only (not the process-global default registry).
    Port 0 disables the endpoint. Returns (server, thread) or None."""
    if not port:
        return None
    return start_http_server(port, addr=addr, registry=registry)
