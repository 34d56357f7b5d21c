"""The training set a RetrainRequested asks for, exported from the feedback store.

Rows are the labelled feedback of every version of the model in the requested time range, in
event-time order. The most recent `holdout_share` is held out for validation and never
trained on. Hard examples (misclassified, or below the model's confidence threshold) from the
training part are repeated until they make up `hard_example_share` of it: the candidate sees
more of what the incumbent got wrong.

The version's drift reference is the rows it was trained and validated on, each once: repeated
hard examples are a training device, not traffic the version will serve, and profiling them
would skew the reference toward the incumbent's mistakes.
"""
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flywheel.feature_store import FeatureStore, FeedbackRecord
from flywheel.processors.training import Dataset
from flywheel.schemas.features import FeatureSpec

from flywheel.errors import Refused

Progress = Callable[[int], None]   # called with the number of rows read so far


class EmptyDataset(Refused):
    """Too few labelled rows in the requested range: the retrain is refused, not failed."""


@dataclass
class TrainingSet:
    train: Dataset
    holdout: Dataset
    hard_examples: int          # rows repeated into train
    time_range: tuple[int, int]
    reference: Dataset          # train and holdout rows, each once: what the drift reference profiles
    train_rows: int             # distinct rows in train (before hard examples are repeated)

    @property
    def content_sha256(self) -> str:
        """The rows trained and validated on, each once, in order: the same request exported again
        from the same store gives the same hash."""
        return content_hash(self.reference)


def export(store: FeatureStore, model: str, spec: FeatureSpec, start: int, end: int,
           holdout_share: float, hard_example_share: float, low_confidence: float = 0.0,
           progress: Progress | None = None) -> TrainingSet:
    rows: list[FeedbackRecord] = []
    for record in store.feedback(model, start, end):
        if record.true_label is not None or record.true_value is not None:
            rows.append(record)
            if progress and len(rows) % 500 == 0:
                progress(len(rows))
    if progress:
        progress(len(rows))
    return split(rows, model, spec, (start, end), holdout_share, hard_example_share, low_confidence)


def split(rows: list[FeedbackRecord], model: str, spec: FeatureSpec, time_range: tuple[int, int],
          holdout_share: float, hard_example_share: float, low_confidence: float = 0.0) -> TrainingSet:
    """Labelled rows in event-time order into the training set, the held-out part and the reference.

    A request answered by several versions (a shadow beside the live one) has one feedback row per
    version; its features and truth are one example, so it is kept once."""
    start, end = time_range
    rows = _once_per_request(rows)
    n_holdout = int(len(rows) * holdout_share)
    if len(rows) - n_holdout < 10 or n_holdout < 10:
        raise EmptyDataset(f"{model}: {len(rows)} labelled rows between {start} and {end} are too few to "
                           f"train and validate on")
    train_rows, holdout_rows = rows[:-n_holdout], rows[-n_holdout:]
    hard = [r for r in train_rows if _is_hard(r, low_confidence)]
    extra = _repeat_to_share(hard, len(train_rows), hard_example_share)
    return TrainingSet(to_dataset(train_rows + extra, spec), to_dataset(holdout_rows, spec), len(extra), (start, end),
                       to_dataset(rows, spec), len(train_rows))


def content_hash(dataset: Dataset) -> str:
    """sha256 of a dataset's spec, numbers (float32), categories and targets, in row order."""
    digest = hashlib.sha256(json.dumps(dataset.spec.to_dict(), sort_keys=True).encode())
    digest.update(np.ascontiguousarray(dataset.numeric, dtype=np.float32).tobytes())
    digest.update(json.dumps([list(c) for c in dataset.categorical]).encode())
    digest.update(json.dumps([str(t) for t in dataset.target]).encode())
    return digest.hexdigest()


def to_dataset(rows: list[FeedbackRecord], spec: FeatureSpec) -> Dataset:
    numeric = np.array([[_number(r.numeric.get(f.name), f.default) for f in spec.numeric] for r in rows],
                       dtype=np.float32).reshape(len(rows), len(spec.numeric))
    categorical = [[r.categorical.get(f.name) or f.default for r in rows] for f in spec.categorical]
    classifier = any(r.true_label is not None for r in rows)
    target = np.array([r.true_label if classifier else r.true_value for r in rows],
                      dtype=object if classifier else np.float64)
    return Dataset(numeric, categorical, target.astype(str) if classifier else target, spec)


def save(dataset: Dataset, path: Path) -> Path:
    """One .npz file a trainer of any kind can read: numeric, categorical, target, spec (JSON)."""
    np.savez(path, numeric=dataset.numeric, categorical=np.array(dataset.categorical, dtype=object),
             target=dataset.target, spec=np.array(json.dumps(dataset.spec.to_dict())))
    return path


def load(path: Path) -> Dataset:
    data = np.load(path, allow_pickle=True)
    spec = FeatureSpec.from_dict(json.loads(str(data["spec"])))
    return Dataset(data["numeric"], [list(c) for c in data["categorical"]], data["target"], spec)


def _once_per_request(rows: list[FeedbackRecord]) -> list[FeedbackRecord]:
    seen: set[str] = set()
    out = []
    for r in rows:
        if r.request_id not in seen:
            seen.add(r.request_id)
            out.append(r)
    return out


def _is_hard(r: FeedbackRecord, low_confidence: float) -> bool:
    wrong = r.true_label is not None and r.predicted_label != r.true_label
    unsure = r.confidence is not None and r.confidence < low_confidence
    return wrong or unsure


def _repeat_to_share(hard: list[FeedbackRecord], n: int, share: float) -> list[FeedbackRecord]:
    if not hard or share <= 0:
        return []
    wanted = int(share * n / (1 - share)) if share < 1 else n
    wanted = max(0, wanted - len(hard))
    return [hard[i % len(hard)] for i in range(wanted)]


def _number(value, default) -> float:
    if value is None:
        return float(default) if default is not None else np.nan
    return float(value)
