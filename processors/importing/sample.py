"""A sample of a model's data, column by column, and what it says about the features: a column
whose every present value is a number is numeric unless it is declared categorical (integer codes
such as a month or a zip code), any other is categorical with the categories seen. Categories are
ordered as a model's encoder orders them: numbers by value (1, 2, 10, not "1", "10", "2"), text
as text. Read from a CSV file, a dict of columns, or a pandas DataFrame."""
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flywheel.processors.importing.errors import ImportRefused
from flywheel.processors.training import Dataset
from flywheel.schemas.features import Feature, FeatureSpec, category_text

from flywheel.errors import open_user_file

MISSING = ("", "NA", "NaN", "nan", "null", "None")


@dataclass
class Sample:
    columns: dict[str, list[Any]]    # name -> values in row order; None where missing

    @classmethod
    def of(cls, data) -> "Sample":
        """From a CSV path, a dict of columns, or anything with `.to_dict("list")` (a DataFrame)."""
        if isinstance(data, Sample):
            return data
        if isinstance(data, (str, Path)):
            return cls.read_csv(Path(data))
        if hasattr(data, "to_dict"):
            data = data.to_dict("list")
        if not isinstance(data, dict) or not data:
            raise ImportRefused("a sample is a CSV file, a dict of columns or a DataFrame")
        columns = {str(k): [_clean(v) for v in values] for k, values in data.items()}
        if len({len(v) for v in columns.values()}) != 1:
            raise ImportRefused("the sample's columns are not all the same length")
        return cls(columns)

    @classmethod
    def read_csv(cls, path: Path) -> "Sample":
        with open_user_file(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ImportRefused(f"{path} has a header but no rows (or nothing at all)")
        return cls({name: _column([row[name] for row in rows]) for name in rows[0]})

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def feature_spec(self, target: str | None, categorical: tuple[str, ...] = (),
                     exclude: tuple[str, ...] = ()) -> FeatureSpec:
        """Numeric features first, then categorical ones, each group in the sample's column order.
        `categorical` names number columns that are codes; `exclude` columns that are not features
        (expected answers)."""
        for name in (target, *categorical, *exclude):
            if name is not None and name not in self.columns:
                raise ImportRefused(f"column {name!r} is not in the sample ({', '.join(self.columns)})")
        numeric, coded = [], []
        for name, values in self.columns.items():
            if name == target or name in exclude:
                continue
            present = [v for v in values if v is not None]
            if not present:
                raise ImportRefused(f"column {name!r} of the sample has no values")
            if all(_is_number(v) for v in present) and name not in categorical:
                numeric.append(Feature(name, "numeric"))
            else:
                coded.append(Feature(name, "categorical", categories=ordered_categories(present)))
        return FeatureSpec(tuple(numeric + coded))

    def with_numeric(self, names: tuple[str, ...]) -> "Sample":
        """The sample with `names` read as numbers (text such as "3.5" from a DataFrame of strings);
        a value that is not one is refused, naming it."""
        columns = dict(self.columns)
        for name in names:
            if name not in columns:
                raise ImportRefused(f"column {name!r} is not in the sample ({', '.join(columns)})")
            columns[name] = [_number(name, row, v) for row, v in enumerate(columns[name])]
        return Sample(columns)

    def stacked(self, other: "Sample", names: list[str]) -> "Sample":
        """These rows, then `other`'s, of the columns `names` (which `other` must have)."""
        missing = [n for n in names if n not in other.columns]
        if missing:
            raise ImportRefused(f"the reference rows lack the sample's feature columns {', '.join(missing)}")
        return Sample({n: self.columns[n] + other.columns[n] for n in names})

    def integer_coded(self, spec: FeatureSpec) -> set[str]:
        """The categorical features whose sample values are numbers: a model fitted on them takes
        numbers, so its converted graph gets them as integers, not as text."""
        return {f.name for f in spec.categorical
                if all(_is_number(v) for v in self.columns[f.name] if v is not None)}

    def dataset(self, spec: FeatureSpec, target: str | None) -> Dataset:
        numeric = np.array([[np.nan if v is None else float(v) for v in self.columns[f.name]] for f in spec.numeric],
                           dtype=np.float32).T.reshape(len(self), len(spec.numeric))
        categorical = [[None if v is None else category_text(v) for v in self.columns[f.name]]
                       for f in spec.categorical]
        labels = np.asarray(self.columns[target] if target else [None] * len(self), dtype=object)
        return Dataset(numeric, categorical, labels, spec)

    def frame(self, spec: FeatureSpec):
        """The features as the estimator was fitted on them: a DataFrame of the spec's columns,
        integer codes as integers."""
        import pandas as pd  # only a model fitted on a DataFrame needs one, and then pandas is there
        coded = self.integer_coded(spec)
        return pd.DataFrame({f.name: _column_for_frame(self.columns[f.name], f.kind, f.name in coded)
                             for f in spec.features})


def ordered_categories(values: list[Any]) -> tuple[str, ...]:
    """The distinct values as a model's encoder orders them: numbers by value, then text as text."""
    distinct = set(values)
    numbers = sorted(v for v in distinct if _is_number(v))
    texts = sorted({str(v) for v in distinct if not _is_number(v)})
    return tuple(dict.fromkeys([category_text(v) for v in numbers] + texts))


def _column_for_frame(values: list[Any], kind: str, integer_coded: bool) -> Any:
    if kind == "numeric":
        return np.asarray(values, dtype=float)
    if integer_coded and None not in values:
        return np.asarray(values, dtype=np.int64)
    return values


@dataclass
class TrainingData:
    """What a trainer plugin (`[retrainer] trainer = "sklearn:..."`) gets: the joined feedback to
    train on, as plain columns; it returns a fitted scikit-learn model or pipeline."""
    features: dict[str, list]        # feature name -> values (numbers, or strings for categoricals)
    target: list                     # the true class (str) or value (float) of each row
    categorical: tuple[str, ...]     # which features are categorical

    @classmethod
    def of(cls, data: Dataset) -> "TrainingData":
        features = {f.name: data.numeric[:, i].astype(float).tolist() for i, f in enumerate(data.spec.numeric)}
        features.update({f.name: list(data.categorical[i]) for i, f in enumerate(data.spec.categorical)})
        return cls(features, list(data.target), tuple(f.name for f in data.spec.categorical))

    def frame(self):
        """The features as a pandas DataFrame (pandas must be installed)."""
        import pandas as pd
        return pd.DataFrame(self.features)


def _column(texts: list[str]) -> list[Any]:
    """A CSV column: numbers if every present value is one, else the texts as written (so a
    categorical column of codes like 1, 2, gold keeps "1", not 1.0)."""
    values = [None if t is None or t.strip() in MISSING else t.strip() for t in texts]
    try:
        return [None if v is None else float(v) for v in values]
    except ValueError:
        return values


def _number(column: str, row: int, value: Any) -> float | None:
    if value is None or _is_number(value):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ImportRefused(f"column {column!r} is declared numeric, but row {row + 1} holds "
                            f"{str(value)[:40]!r}") from None


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
