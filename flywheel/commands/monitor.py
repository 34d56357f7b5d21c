"""`flywheel monitor`: drift, data quality and live performance per model version and window."""

from flywheel.console import err
from flywheel.processors.monitor.process import Monitor, MonitorMetrics
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.stack import ProcessSpec, replicas
from flywheel.wiring import feature_store_for, metrics_endpoint, schema_registry, start_processor


def register(sub) -> None:
    p = sub.add_parser("monitor", help="watch drift, data quality and live performance (runs until stopped)",
                       description="Consume every model's predictions and the feedback topic; per model version "
                                   "and tumbling window compare sketches of the features and predictions with the "
                                   "version's reference profile (KS, PSI, D1, chi-square), check data-quality rules "
                                   "and score the joined feedback; write each window to the store and to "
                                   "Prometheus. Several monitors in one group each write their partitions' share "
                                   "of a window, merged by one of them. "
                                   "Settings: [monitor] or FLYWHEEL_MONITOR_<FIELD>.")
    p.add_argument("--window", type=float, metavar="SECONDS", help="window length (default from [monitor], 3600)")
    p.add_argument("--instance-id", metavar="ID", help="stable id of this monitor process (default: host name and pid)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    overrides = {"window_seconds": args.window} if args.window else {}
    settings = config.section(MonitorSettings, "monitor", **overrides)
    metrics = MonitorMetrics()
    stop = start_processor(config)
    with feature_store_for(config) as store:
        monitor = Monitor(config.kafka, schema_registry(config), store, settings, metrics, stop,
                          instance=args.instance_id or config.instance_id or None,
                          endpoint=metrics_endpoint(config))
        err.print(f"monitor: {settings.window_seconds:g}s windows, "
                  f"metrics on {config.metrics_addr}:{config.metrics_port}")
        monitor.run()
    return 0


def stack_processes(config) -> list[ProcessSpec]:
    return replicas("monitor", ["monitor"], config.section(MonitorSettings, "monitor").instances)
