"""The proof an import is aligned: the converted model, fed the sample through the worker's own
encoding, must give the answers the model is known to give on those rows.

What the answers are compared with: for a scikit-learn model, the original model's own answers
on the sample; for an ONNX file, the sample's expected columns (`expected`): one probability
column per class label, in the labels' order, or one column of predicted labels (classifiers), or
one column of predicted values (regressors); or a callable given the sample's feature columns that
returns those. A model whose columns or categories are fed in another order than it was trained
on answers differently, and the import is refused, naming the first row that differs."""
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from flywheel.processors.importing.convert import layout_text
from flywheel.processors.importing.errors import ImportRefused
from flywheel.processors.importing.sample import Sample
from flywheel.processors.models import Manifest
from flywheel.schemas.features import category_text

Expected = tuple[str, ...] | Callable[[dict[str, list]], object] | None


@dataclass(frozen=True)
class Checked:
    rows: int                  # sample rows whose answers were compared (0: nothing to compare with)
    largest_difference: float  # over those rows, in probability (classifiers) or value
    against: str               # what they were compared with


def expected_answers(expected: Expected, rows: Sample, manifest: Manifest) -> tuple[np.ndarray, str] | None:
    """The answers the sample says the model gives, (rows, columns), and what they are."""
    if expected is None:
        return None
    if callable(expected):
        features = {f.name: rows.columns[f.name] for f in manifest.features.features}
        values, against = np.asarray(expected(features), dtype=object), "the expected answers' function"
    else:
        values = np.array([rows.columns[name] for name in expected], dtype=object).T
        against = f"the sample's expected column{'s' if len(expected) > 1 else ''} {', '.join(expected)}"
    if values.ndim == 0 or len(values) != len(rows):
        raise ImportRefused(f"{against} gives {values.size if values.ndim else 1} answers for {len(rows)} rows")
    values = values.reshape(len(rows), -1)
    missing = [i for i, row in enumerate(values) if any(v is None for v in row)]
    if missing:
        raise ImportRefused(f"{against} has no answer on {len(missing)} rows, first row {missing[0] + 1}")
    width = len(manifest.output.labels) if manifest.output.task == "classifier" else 1
    if values.shape[1] not in (1, width):
        raise ImportRefused(f"{against} gives {values.shape[1]} answers a row; the model answers {width} "
                            f"({', '.join(manifest.output.labels) or 'a value'})")
    return values, against


def compare(answers: np.ndarray, expected: np.ndarray, against: str, manifest: Manifest,
            tolerance: float) -> Checked:
    """Refuse unless every row's answer agrees with the expected one (within `tolerance`)."""
    labels = manifest.output.labels
    if manifest.output.task == "classifier" and expected.shape[1] == 1:
        given = np.array([labels[i] for i in answers.argmax(axis=1)], dtype=object)
        wanted = np.array([category_text(v) for v in expected[:, 0]], dtype=object)
        differs = given != wanted
        largest = float(differs.any())
    else:
        try:
            given, wanted = np.asarray(answers, dtype=float), np.asarray(expected, dtype=float)
        except ValueError:
            raise ImportRefused(f"{against} are not all numbers: give probabilities (or values), or "
                                f"one column of predicted labels") from None
        gap = np.abs(given - wanted).max(axis=1)
        differs = ~(gap <= tolerance)           # a NaN differs
        largest = float(np.nanmax(gap)) if len(gap) else 0.0
    if differs.any():
        row = int(np.argmax(differs))
        raise ImportRefused(
            f"the imported model's answers differ from {against} on {int(differs.sum())} of {len(differs)} "
            f"rows, first on row {row + 1} ({_show(given[row])} where the sample expects {_show(wanted[row])}): "
            f"the likely cause is the column order or the category encoding; the model is fed "
            f"{layout_text(manifest.features)}")
    return Checked(len(differs), largest, against)


def _show(answer) -> str:
    if isinstance(answer, np.ndarray):
        return "[" + ", ".join(f"{float(v):.4g}" for v in answer) + "]"
    return repr(answer)
