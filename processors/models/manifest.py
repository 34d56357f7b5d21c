"""A model version's manifest: what it expects (feature spec and how categoricals are encoded),
what it answers (output spec and the checks on it), its artifact's sha256, training metrics,
its reference profile for drift, its lineage (what trained it), and its stage. Stored as
manifest.json beside model.onnx."""
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from flywheel.processors.models.errors import ManifestError
from flywheel.schemas.features import FeatureSpec

Task = Literal["classifier", "regressor"]
Encoding = Literal["onehot", "ordinal"]


@dataclass(frozen=True)
class OutputSpec:
    task: Task = "classifier"
    labels: tuple[str, ...] = ()                 # classifier: the probability columns, in order
    min: float | None = None                     # regressor: declared value range
    max: float | None = None
    low_confidence: float = 0.0                  # classifier: top probability under this -> review
    low_margin: float = 0.0                      # classifier: top1 - top2 under this -> review
    probability_tolerance: float = 1e-3          # |sum(p) - 1| above this -> flagged

    @classmethod
    def from_dict(cls, d: dict) -> "OutputSpec":
        return cls(**{**d, "labels": tuple(d.get("labels", ()))})


@dataclass(frozen=True)
class Lineage:
    """What a version was made from, enough to audit a retrain and rebuild its dataset: the
    feedback time range it was exported from, its rows, a content hash of those rows (each once,
    in the order trained on: train part, then held-out part), the trainer setting and a hash of
    its code, the version it replaced and the retrain request that asked for it."""
    parent: str | None = None            # the live version when it was trained
    retrain_id: str | None = None        # the RetrainRequested that asked for it
    reasons: tuple[str, ...] = ()        # the rules that fired (see the trigger's policy)
    trainer: str = ""                    # the trainer setting, e.g. sklearn:my_trainer.py:train
    trainer_sha256: str = ""             # of the plugin file, module, command or built-in trainer
    data_start: int = 0                  # feedback event time range (ms), start inclusive
    data_end: int = 0                    # end exclusive
    train_rows: int = 0                  # distinct rows trained on (hard examples not counted twice)
    holdout_rows: int = 0                # rows held out for validation
    hard_examples: int = 0               # extra copies of hard examples added to the training part
    holdout_share: float = 0.0           # as requested: with the range, what a reproduction asks for
    hard_example_share: float = 0.0
    dataset_sha256: str = ""             # content hash of the train and held-out rows

    @classmethod
    def from_dict(cls, d: dict | None) -> "Lineage | None":
        return None if d is None else cls(**{**d, "reasons": tuple(d.get("reasons", ()))})


@dataclass(frozen=True)
class Manifest:
    model: str
    version: str
    features: FeatureSpec
    output: OutputSpec
    sha256: str = ""
    artifact: str = "model.onnx"
    input_name: str = "input"
    categorical_encoding: Encoding = "onehot"
    training_metrics: dict[str, float] = field(default_factory=dict)
    reference_profile: str | None = None         # path of the drift reference profile
    stage: str = "registered"
    created_at: int = field(default_factory=lambda: int(time.time() * 1000))   # trained
    registered_at: int = 0                                                        # set by the registry
    description: str = ""
    lineage: Lineage | None = None               # None: imported, or registered before lineage existed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = self.features.to_dict()
        d["output"] = {**asdict(self.output), "labels": list(self.output.labels)}
        if self.lineage is not None:
            d["lineage"] = {**asdict(self.lineage), "reasons": list(self.lineage.reasons)}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        try:
            return cls(**{**d, "features": FeatureSpec.from_dict(d["features"]),
                          "output": OutputSpec.from_dict(d.get("output", {})),
                          "lineage": Lineage.from_dict(d.get("lineage"))})
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"manifest of {d.get('model', '?')}/{d.get('version', '?')} is invalid: {e}") from e

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ManifestError(f"manifest {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ManifestError(f"manifest {path} is not JSON: {e}") from None
