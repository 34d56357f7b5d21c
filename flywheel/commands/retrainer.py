"""`flywheel retrainer`: turn RetrainRequested into validated canaries (runs until stopped)."""

from flywheel.console import err
from flywheel.processors.models import ModelRegistry
from flywheel.processors.retrainer.process import Retrainer, RetrainerMetrics
from flywheel.processors.retrainer.settings import RetrainerSettings
from flywheel.schemas.setting import for_model
from flywheel.stack import ProcessSpec, replicas
from flywheel.wiring import feature_store_for, schema_registry, start_processor


def register(sub) -> None:
    p = sub.add_parser("retrainer", help="train, validate and canary new model versions (runs until stopped)",
                       description="Consumes the retrain topic. For each request: export the feedback it names, "
                                   "train a candidate with [retrainer] trainer, one of: reference:mlp, reference:gbt, "
                                   "sklearn:module:function or sklearn:path/to/file.py:function (your function "
                                   "returns a fitted scikit-learn model; Flywheel converts it), "
                                   "python:module:function, command:CMD {dataset} {output}; validate it against "
                                   "the live version on the most recent held-out feedback, and register and "
                                   "deploy it as a canary if it is better by min_improvement; else record a "
                                   "REJECTED model event. Settings: [retrainer] or FLYWHEEL_RETRAINER_<FIELD>.")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    settings = config.section(RetrainerSettings, "retrainer")
    metrics = RetrainerMetrics()
    stop = start_processor(config, metrics.registry)
    schemas = schema_registry(config)
    with feature_store_for(config) as store:
        models = ModelRegistry(config.kafka, schemas, config.data_dir, actor="retrainer")
        retrainer = Retrainer(config.kafka, schemas, store, models, settings, metrics, stop)
        own = "".join(f", {model}: {for_model(settings, model).trainer}" for model in sorted(settings.models))
        err.print(f"retrainer: trainer {settings.trainer}{own}, metrics on {config.metrics_addr}:{config.metrics_port}")
        retrainer.run()
        models.close()
    return 0


def stack_processes(config) -> list[ProcessSpec]:
    return replicas("retrainer", ["retrainer"], config.section(RetrainerSettings, "retrainer").instances)
