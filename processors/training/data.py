"""A synthetic dataset generator: numeric features with a known signal, optional categorical
features, a classification or regression target, and the FeatureSpec that describes it."""
from dataclasses import dataclass

import numpy as np
from flywheel.schemas.features import Feature, FeatureSpec


@dataclass
class Dataset:
    numeric: np.ndarray                       # (n, k) float32, columns in spec.numeric order
    categorical: list[list[str]]              # one list of n values per categorical feature
    target: np.ndarray                        # class names (str) or values (float)
    spec: FeatureSpec

    def __len__(self) -> int:
        return self.numeric.shape[0]

    def part(self, start: int = 0, stop: int | None = None) -> "Dataset":
        """Rows start..stop as a dataset of their own."""
        return Dataset(self.numeric[start:stop], [c[start:stop] for c in self.categorical], self.target[start:stop],
                       self.spec)

    def rows(self, start: int = 0, stop: int | None = None) -> list[dict]:
        """Rows as flat name -> value dicts (what a user publishes)."""
        names = [f.name for f in self.spec.numeric]
        cats = [f.name for f in self.spec.categorical]
        stop = len(self) if stop is None else stop
        return [{**dict(zip(names, map(float, self.numeric[i]))),
                 **{c: self.categorical[j][i] for j, c in enumerate(cats)}} for i in range(start, stop)]


def synthetic(n: int, n_numeric: int = 32, categories: dict[str, tuple[str, ...]] | None = None,
              task: str = "classifier", n_classes: int = 2, seed: int = 0, shift: float = 0.0,
              unknown_bucket: str | None = None) -> Dataset:
    """`shift` moves every numeric feature's mean (to make drifted data)."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(shift, 1.0, size=(n, n_numeric)).astype(np.float32)
    weights = np.random.default_rng(1234).normal(0, 1, size=(n_numeric,))
    score = numeric @ weights / np.sqrt(n_numeric) + 0.5 * np.sin(numeric[:, 0] * 2)
    categorical = []
    for values in (categories or {}).values():
        chosen = rng.integers(0, len(values), size=n)
        categorical.append([values[i] for i in chosen])
        score = score + (chosen - (len(values) - 1) / 2) * 0.3
    score = score + rng.normal(0, 0.3, size=n)
    if task == "classifier":
        edges = np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1])
        target = np.array([f"class_{k}" for k in np.searchsorted(edges, score)])
    else:
        target = score.astype(np.float64)
    features = tuple(Feature(f"f{i:02d}", "numeric", min=-6.0, max=6.0) for i in range(n_numeric)) + tuple(
        Feature(name, "categorical", categories=tuple(values) + ((unknown_bucket,) if unknown_bucket else ()),
                unknown_bucket=unknown_bucket)
        for name, values in (categories or {}).items())
    return Dataset(numeric, categorical, target, FeatureSpec(features))
