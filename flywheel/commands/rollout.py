"""`flywheel rollout`: promote or roll back canaries on live evidence (runs until stopped)."""
import logging

from feature_store import StoreSettings, open_store
from processors.models import ModelRegistry
from processors.rollout.process import Rollout, RolloutMetrics, RolloutSettings
from processors.runtime import start_metrics_server, stop_on_signals

from flywheel.console import err
from flywheel.stack import ProcessSpec
from flywheel.wiring import schema_registry


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    metrics = RolloutMetrics()
    start_metrics_server(config.metrics_port, metrics.registry)
    stop = stop_on_signals()
    with open_store(config.section(StoreSettings, "store"), config.data_dir) as store:
        models = ModelRegistry(config.kafka, schema_registry(config), config.data_dir, actor="rollout")
        err.print(f"rollout: every {settings.interval_seconds:g}s, metrics on :{config.metrics_port}")
        Rollout(store, models, settings, metrics, stop).run()
        models.close()
    return 0


def stack_processes(config) -> list[ProcessSpec]:
    return [ProcessSpec("rollout", ["rollout"])]
