"""`flywheel rollout`: promote or roll back canaries on live evidence (runs until stopped)."""

from flywheel.console import err
from flywheel.processors.models import ModelRegistry
from flywheel.processors.rollout.process import Rollout, RolloutMetrics
from flywheel.processors.rollout.settings import RolloutSettings
from flywheel.processors.runtime.leadership import Leadership
from flywheel.stack import ProcessSpec, replicas
from flywheel.wiring import feature_store_for, schema_registry, start_processor


def register(sub) -> None:
    p = sub.add_parser("rollout", help="promote or roll back canaries on live feedback (runs until stopped)",
                       description="Every interval, for each model with a canary: once canary and live version "
                                   "each have min_labels labelled requests from the same period, compare their "
                                   "error with Welch's t-test; a clear winner decides (promote or roll back), and "
                                   "no clear gain by max_labels keeps the incumbent. Settings: [rollout] or "
                                   "FLYWHEEL_ROLLOUT_<FIELD>.")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    settings = config.section(RolloutSettings, "rollout")
    metrics = RolloutMetrics()
    stop = start_processor(config, metrics.registry)
    with feature_store_for(config) as store:
        models = ModelRegistry(config.kafka, schema_registry(config), config.data_dir, actor="rollout")
        err.print(f"rollout: every {settings.interval_seconds:g}s, "
                  f"metrics on {config.metrics_addr}:{config.metrics_port}")
        Rollout(store, models, settings, metrics, stop, leadership=Leadership(config.kafka, "rollout")).run()
        models.close()
    return 0


def stack_processes(config) -> list[ProcessSpec]:
    return replicas("rollout", ["rollout"], config.section(RolloutSettings, "rollout").instances)
