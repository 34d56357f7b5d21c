"""`flywheel joiner`: join ground truth with predictions into FeedbackRecords, until stopped."""

from flywheel.console import err
from flywheel.processors.joiner.process import FeedbackJoiner, JoinerMetrics
from flywheel.processors.joiner.settings import JoinerSettings
from flywheel.stack import ProcessSpec, replicas
from flywheel.wiring import feature_store_for, metrics_endpoint, schema_registry, start_processor


def register(sub) -> None:
    p = sub.add_parser("joiner", help="join labels with predictions into the feedback store (runs until stopped)",
                       description="Consume every model's predictions and the labels topic; write each label "
                                   "joined with its prediction to the store and the feedback topic. Labels may "
                                   "come before or after their prediction; a label past the join window or for "
                                   "an unknown request is a dead letter. Settings: [joiner] in the config file "
                                   "or FLYWHEEL_JOINER_<FIELD> (join_window_seconds, early_label_wait_seconds, ...).")
    p.add_argument("--at-least-once", action="store_true",
                   help="no Kafka transactions (the store stays exactly-once; feedback may repeat)")
    p.add_argument("--instance-id", metavar="ID", help="stable id of this joiner process (default: host name)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    overrides = {"exactly_once": False if args.at_least_once else None, "instance_id": args.instance_id}
    settings = config.section(JoinerSettings, "joiner", **{k: v for k, v in overrides.items() if v is not None})
    metrics = JoinerMetrics()
    stop = start_processor(config)
    with feature_store_for(config) as store:
        joiner = FeedbackJoiner(config.kafka, schema_registry(config), store, settings, metrics, stop,
                                config.instance_id or None, endpoint=metrics_endpoint(config))
        err.print(f"joiner: window {settings.join_window_seconds:g}s, "
                  f"metrics on {config.metrics_addr}:{config.metrics_port}")
        joiner.run()
    return 0


def stack_processes(config) -> list[ProcessSpec]:
    settings = config.section(JoinerSettings, "joiner")
    return replicas("joiner", ["joiner"], settings.instances)
