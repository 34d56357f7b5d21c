"""`flywheel joiner`: join ground truth with predictions into FeedbackRecords, until stopped."""
import logging

from feature_store import StoreSettings, open_store
from processors.joiner.join import JoinerSettings
from processors.joiner.process import FeedbackJoiner, JoinerMetrics
from processors.runtime import start_metrics_server, stop_on_signals

from flywheel.console import err
from flywheel.stack import ProcessSpec
from flywheel.wiring import schema_registry


def register(sub) -> None:
    p = sub.add_parser("joiner", help="join labels with predictions into the feedback store (runs until stopped)",
                       description="Consume every model's predictions and the labels topic; write each label "
                                   "joined with its prediction to the store and the feedback topic. Labels may "
                                   "come before or after their prediction; a label past the join window or for "
                                   "an unknown request is a dead letter. Settings: [joiner] in the config file "
                                   "or FLYWHEEL_JOINER_<FIELD> (join_window_seconds, early_label_wait_seconds, ...).")
    p.add_argument("--at-least-once", action="store_true",
                   help="no Kafka transactions (the store stays exactly-once; feedback may repeat)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    settings = config.section(JoinerSettings, "joiner", **({"exactly_once": False} if args.at_least_once else {}))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    metrics = JoinerMetrics()
    start_metrics_server(config.metrics_port, metrics.registry)
    stop = stop_on_signals()
    with open_store(config.section(StoreSettings, "store"), config.data_dir) as store:
        joiner = FeedbackJoiner(config.kafka, schema_registry(config), store, settings, metrics, stop)
        err.print(f"joiner: window {settings.join_window_seconds:g}s, metrics on :{config.metrics_port}")
        joiner.run()
    return 0


def stack_processes(config) -> list[ProcessSpec]:
    return [ProcessSpec("joiner", ["joiner"])]
