"""`flywheel trigger`: apply the retrain policy to every model, emit RetrainRequested."""
import logging

from feature_store import StoreSettings, open_store
from processors.runtime import start_metrics_server, stop_on_signals
from processors.trigger.policy import TriggerSettings
from processors.trigger.process import RetrainTrigger, TriggerMetrics

from flywheel.console import err
from flywheel.stack import ProcessSpec
from flywheel.wiring import schema_registry


def register(sub) -> None:
    p = sub.add_parser("trigger", help="request retrains by policy (runs until stopped)",
                       description="Every interval, for every model on the models topic: performance below a "
                                   "threshold on enough labels, drift for K consecutive windows, enough new "
                                   "labels, or a live version older than the maximum age requests a retrain, "
                                   "after a cooldown and never while one is in flight. Settings: [trigger] or "
                                   "FLYWHEEL_TRIGGER_<FIELD>.")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    settings = config.section(TriggerSettings, "trigger")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    metrics = TriggerMetrics()
    start_metrics_server(config.metrics_port, metrics.registry)
    stop = stop_on_signals()
    with open_store(config.section(StoreSettings, "store"), config.data_dir) as store:
        trigger = RetrainTrigger(config.kafka, schema_registry(config), store, settings, metrics, stop)
        err.print(f"trigger: every {settings.interval_seconds:g}s, metrics on :{config.metrics_port}")
        trigger.run()
    return 0


def stack_processes(config) -> list[ProcessSpec]:
    return [ProcessSpec("trigger", ["trigger"])]
