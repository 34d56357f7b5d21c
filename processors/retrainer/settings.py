"""Retrainer settings: TOML [retrainer], env FLYWHEEL_RETRAINER_<FIELD>; a model's own trainer in
[retrainer.models.<model>] (env FLYWHEEL_RETRAINER_MODELS, the same tables as JSON)."""
from dataclasses import dataclass

from flywheel.processors.retrainer.trainer_spec import resolve_trainer, trainer_problem
from flywheel.schemas.setting import per_model, setting


@dataclass
class RetrainerSettings:
    """TOML [retrainer], env FLYWHEEL_RETRAINER_<FIELD>: how a candidate is trained and rolled out."""
    trainer: str = setting(
        "reference:mlp", check=trainer_problem, resolve=resolve_trainer,
        doc="reference:mlp|gbt (built in), sklearn:module:function or sklearn:path/to/file.py:function (a "
            "relative path is relative to the config file's folder), python:module:function, or "
            "command:... with {dataset} and {output}; checked (imported) when the configuration loads")
    min_improvement: float = setting(0.01, unit="metric value", min=0,
                                     doc="primary metric gain the candidate must show over the incumbent")
    canary_share: float = setting(0.2, unit="share", min=0, max=1, doc="share of traffic the new version gets "
                                                                       "as a canary")
    group_id: str = setting("flywheel-retrainer", doc="Kafka consumer group")
    instances: int = setting(1, unit="processes", min=1,
                             doc="processes `flywheel up` runs as one group: the retrain topic's one partition "
                                 "goes to one, the others stand by")
    models: dict[str, dict] = per_model(
        "trainer", doc="per-model overrides, one table each: [retrainer.models.tumour] trainer = "
                       "\"sklearn:my_trainer.py:train\"; a model without one is trained by `trainer`")
