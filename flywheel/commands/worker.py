"""`flywheel worker`: serve registered models from their request topics."""
from flywheel.console import err
from flywheel.model_names import check_registered
from flywheel.processors.worker.metrics import WorkerMetrics
from flywheel.processors.worker.settings import WorkerSettings
from flywheel.processors.worker.worker import InferenceWorker
from flywheel.wiring import ensure_core_topics, feature_store_for, metrics_endpoint, schema_registry, start_processor


def register(sub) -> None:
    p = sub.add_parser("worker", help="run an inference worker (every registered model, or --model)",
                       description="Consumes <model>.requests in batches, predicts with ONNX Runtime, produces "
                                   "<model>.predictions exactly once (Kafka transactions), dead letters what it "
                                   "cannot serve, follows the `models` topic to hot-swap versions. Settings: "
                                   "[worker] in the config file or FLYWHEEL_WORKER_<FIELD>.")
    p.add_argument("-m", "--model", action="append", default=[], help="serve this model only (repeatable)")
    p.add_argument("--at-least-once", action="store_true",
                   help="no transactions: lower latency, duplicates possible after a crash")
    p.add_argument("--max-batch", type=int, metavar="N", help="records per batch at most (default 1000)")
    p.add_argument("--max-wait-ms", type=float, metavar="MS", help="wait this long for a batch to fill (default 0)")
    p.add_argument("--instance-id", metavar="ID",
                   help="stable id of this worker process (default: FLYWHEEL_INSTANCE_ID, else "
                   "unique per process: host name and pid)")
    p.add_argument("--cache-size", type=int, metavar="N", help="prediction cache entries per version (default 0: off)")
    p.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime intra-op threads (default 1)")
    p.set_defaults(handler=run)


def stack_processes(config):
    from flywheel.stack import replicas
    settings = config.section(WorkerSettings, "worker")
    return replicas("worker", ["worker"], settings.instances)


def _online(settings: WorkerSettings, config) -> dict:
    """Online feature lookups for the models configured with feature groups ([worker] online_groups)."""
    if not settings.online_groups:
        return {}
    from flywheel.feature_store.online import OnlineFeatureLookup
    store = feature_store_for(config)
    return {model: OnlineFeatureLookup(store, groups) for model, groups in settings.online_groups.items()}


def run(args, config) -> int:
    check_registered(config, args.model)
    overrides = {"models": args.model or None, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
                 "instance_id": args.instance_id or config.instance_id or None, "cache_size": args.cache_size,
                 "intra_op_threads": args.threads,
                 "exactly_once": False if args.at_least_once else None}
    settings = config.section(WorkerSettings, "worker", **{k: v for k, v in overrides.items() if v is not None})
    ensure_core_topics(config, settings.models)
    metrics = WorkerMetrics()
    stop = start_processor(config)
    worker = InferenceWorker(settings, config.kafka, schema_registry(config), config.data_dir, metrics, stop,
                             _online(settings, config), metrics_endpoint(config))
    err.print(f"worker {settings.instance_id}: {'exactly-once' if settings.exactly_once else 'at-least-once'}, "
              f"metrics on {config.metrics_addr}:{config.metrics_port}")
    worker.run()
    return 0
