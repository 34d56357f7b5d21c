"""Retrainer settings: TOML [retrainer], env FLYWHEEL_RETRAINER_<FIELD>."""
from dataclasses import dataclass
from pathlib import Path

from flywheel.processors.retrainer.trainer_spec import resolve_trainer, trainer_problem
from flywheel.schemas.setting import setting


def _trainers_problem(trainers: dict, base: Path) -> str | None:
    for model, spec in trainers.items():
        problem = trainer_problem(spec, base) if isinstance(spec, str) else f"must be text, not {spec!r}"
        if problem:
            return f"{model}: {problem}"
    return None


def _resolve_trainers(trainers: dict, base: Path) -> dict:
    if not isinstance(trainers, dict):
        return trainers
    return {model: resolve_trainer(spec, base) for model, spec in trainers.items()}


@dataclass
class RetrainerSettings:
    """TOML [retrainer], env FLYWHEEL_RETRAINER_<FIELD>: how a candidate is trained and rolled out."""
    trainer: str = setting(
        "reference:mlp", check=trainer_problem, resolve=resolve_trainer,
        doc="reference:mlp|gbt (built in), sklearn:module:function or sklearn:path/to/file.py:function (a "
            "relative path is relative to the config file's folder), python:module:function, or "
            "command:... with {dataset} and {output}; checked (imported) when the configuration loads")
    trainers: dict[str, str] = setting(
        factory=dict, check=_trainers_problem, resolve=_resolve_trainers,
        doc="a model's own trainer, in the forms of `trainer`, by model name ([retrainer.trainers] tumour = "
            "\"sklearn:my_trainer.py:train\"); a model not named here is trained by `trainer`")
    min_improvement: float = setting(0.01, unit="metric value", min=0,
                                     doc="primary metric gain the candidate must show over the incumbent")
    canary_share: float = setting(0.2, unit="share", min=0, max=1, doc="share of traffic the new version gets "
                                                                       "as a canary")
    group_id: str = setting("flywheel-retrainer", doc="Kafka consumer group")
    instances: int = setting(1, unit="processes", min=1,
                             doc="processes `flywheel up` runs as one group: the retrain topic's one partition "
                                 "goes to one, the others stand by")

    def trainer_for(self, model: str) -> str:
        return self.trainers.get(model, self.trainer)
