"""Pluggable trainers. A trainer gets a dataset file (see dataset.save) and writes an ONNX file.

- `reference:mlp` / `reference:gbt`: the built-in scikit-learn trainer (skl2onnx).
- `python:package.module:function`: calls function(dataset_path, output_path); it may return
  a dict of training metrics.
- `command:...`: a shell command with {dataset} and {output} placeholders, e.g.
  `command:python train.py --data {dataset} --out {output}`.
- `sklearn:module:function` or `sklearn:path/to/file.py:function`: the public plugin API. Calls
  function(data) with a processors.importing.TrainingData (plain feature columns and target);
  it returns a fitted scikit-learn model or pipeline, which Flywheel converts to ONNX in the
  worker's layout (as `flywheel import` does). The plugin imports nothing of Flywheel's.

A classifier from the python: and command: plugins must output probabilities in the incumbent's
label order; a sklearn: plugin's labels are its model's classes.
"""
import shlex
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from flywheel.processors.models import Manifest, OutputSpec
from flywheel.processors.retrainer import dataset as datasets
from flywheel.processors.retrainer.trainer_spec import TrainerFailed, TrainerSpec, parse, plugin_function
from flywheel.processors.training import train as reference_train


@dataclass
class Candidate:
    onnx_bytes: bytes
    output: OutputSpec
    metrics: dict[str, float] = field(default_factory=dict)


class Trainer(Protocol):
    def train(self, dataset_path: Path, workdir: Path, incumbent: Manifest) -> Candidate: ...


@dataclass
class ReferenceTrainer:
    kind: str = "mlp"

    def train(self, dataset_path: Path, workdir: Path, incumbent: Manifest) -> Candidate:
        data = datasets.load(dataset_path)
        trained = reference_train(incumbent.model, "candidate", data.numeric, data.target, data.spec,
                                  data.categorical, kind=self.kind, task=incumbent.output.task,
                                  holdout=0.0, low_confidence=incumbent.output.low_confidence)
        return Candidate(trained.onnx_bytes, trained.manifest.output, trained.manifest.training_metrics)


@dataclass
class PythonTrainer:
    target: str   # package.module:function

    def train(self, dataset_path: Path, workdir: Path, incumbent: Manifest) -> Candidate:
        function = plugin_function(TrainerSpec("python", self.target))
        output = workdir / "model.onnx"
        metrics = function(str(dataset_path), str(output)) or {}
        return Candidate(_read_output(output, self.target), incumbent.output, dict(metrics))


@dataclass
class CommandTrainer:
    command: str

    def train(self, dataset_path: Path, workdir: Path, incumbent: Manifest) -> Candidate:
        output = workdir / "model.onnx"
        argv = [part.format(dataset=dataset_path, output=output) for part in shlex.split(self.command)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise TrainerFailed(f"trainer command exited with {done.returncode}: {tail[0]}")
        return Candidate(_read_output(output, self.command), incumbent.output)


@dataclass
class SklearnTrainer:
    target: str   # module:function or path/to/file.py:function

    def train(self, dataset_path: Path, workdir: Path, incumbent: Manifest) -> Candidate:
        from flywheel.processors.importing import ImportRefused, TrainingData, convert
        data = datasets.load(dataset_path)
        estimator = plugin_function(TrainerSpec("sklearn", self.target))(TrainingData.of(data))
        classifier = incumbent.output.task == "classifier"
        try:
            onnx_bytes = convert.from_sklearn(estimator, data.spec, classifier)
        except ImportRefused as e:
            raise TrainerFailed(f"trainer sklearn:{self.target}: {e}") from e
        labels = tuple(str(c) for c in getattr(estimator, "classes_", ())) if classifier else ()
        return Candidate(onnx_bytes, replace(incumbent.output, labels=labels))


def make_trainer(spec: str) -> Trainer:
    parsed = parse(spec)
    kinds = {"reference": ReferenceTrainer, "python": PythonTrainer, "command": CommandTrainer,
             "sklearn": SklearnTrainer}
    return kinds[parsed.kind](parsed.target)


def _read_output(path: Path, who: str) -> bytes:
    if not path.is_file() or path.stat().st_size == 0:
        raise TrainerFailed(f"trainer {who} wrote no ONNX file at {path}")
    return path.read_bytes()
