"""`flywheel simulate`: demo traffic for a model, with late labels and a concept drift.

Its /metrics has flywheel_records_out_total{processor="simulator",topic} (requests and labels
sent), so the live view shows the rate it sends at."""
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily

from flywheel.console import err
from flywheel.model_names import check_registered
from flywheel.processors.simulator.settings import SimulatorSettings
from flywheel.processors.simulator.traffic import TrafficSimulator
from flywheel.streams.labels import LabelPublisher
from flywheel.streams.publisher import Publisher
from flywheel.wiring import schema_registry, start_processor


def register(sub) -> None:
    p = sub.add_parser("simulate", help="publish demo traffic and late ground truth (runs until stopped)",
                       description="Requests from a known concept at --rate per second; each is labelled after "
                                   "an exponential delay (mean --label-delay story seconds) with probability "
                                   "--label-share; at --drift-at story seconds the concept drifts. --speed "
                                   "compresses story time. Settings: [simulator] or FLYWHEEL_SIMULATOR_<FIELD>.")
    p.add_argument("-m", "--model", help="model to send requests to (default churn)")
    p.add_argument("--rate", type=float, help="requests per second")
    p.add_argument("--drift-at", type=float, help="story seconds until the drift (negative: never)")
    p.add_argument("--label-delay", dest="label_delay_mean", type=float, help="mean label delay, story seconds")
    p.add_argument("--label-share", type=float, help="share of requests that ever get a label")
    p.add_argument("--speed", type=float, help="story seconds per real second")
    p.add_argument("--duration", type=float, help="story seconds to run (default: until stopped)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    check_registered(config, args.model)
    flags = {k: getattr(args, k) for k in ("model", "rate", "drift_at", "label_delay_mean", "label_share",
                                           "speed", "duration") if getattr(args, k) is not None}
    settings = config.section(SimulatorSettings, "simulator", **flags)
    schemas = schema_registry(config)
    simulator = TrafficSimulator(settings, Publisher(config.kafka, schemas, settings.model),
                                 LabelPublisher(config.kafka, schemas, source="simulator"))
    err.print(f"simulate: {settings.rate:g} requests/s to {settings.model}, drift at {settings.drift_at:g} story s, "
              f"speed {settings.speed:g}x")
    metrics = CollectorRegistry()
    metrics.register(_SentCounter(simulator))
    simulator.run(start_processor(config, metrics))
    err.print(f"simulate: sent {simulator.sent} requests, {simulator.labelled} labels")
    return 0


class _SentCounter:
    """The simulator's own counts, read at scrape time (its loop stays free of metric calls)."""

    def __init__(self, simulator: TrafficSimulator):
        self.simulator = simulator

    def collect(self):
        family = CounterMetricFamily("flywheel_records_out", "Records produced", labels=["processor", "topic"])
        family.add_metric(["simulator", self.simulator.publisher.topic], self.simulator.sent)
        family.add_metric(["simulator", self.simulator.labels.topic], self.simulator.labelled)
        yield family
