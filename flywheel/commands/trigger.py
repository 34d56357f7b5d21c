"""`flywheel trigger`: apply the retrain policy to every model, emit RetrainRequested."""

from flywheel.console import err
from flywheel.processors.runtime.leadership import Leadership
from flywheel.processors.trigger.process import RetrainTrigger, TriggerMetrics
from flywheel.processors.trigger.settings import TriggerSettings
from flywheel.stack import ProcessSpec, replicas
from flywheel.wiring import feature_store_for, schema_registry, start_processor


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
    metrics = TriggerMetrics()
    stop = start_processor(config, metrics.registry)
    with feature_store_for(config) as store:
        trigger = RetrainTrigger(config.kafka, schema_registry(config), store, settings, metrics, stop,
                                 leadership=Leadership(config.kafka, "trigger"))
        err.print(f"trigger: every {settings.interval_seconds:g}s, "
                  f"metrics on {config.metrics_addr}:{config.metrics_port}")
        trigger.run()
    return 0


def stack_processes(config) -> list[ProcessSpec]:
    return replicas("trigger", ["trigger"], config.section(TriggerSettings, "trigger").instances)
