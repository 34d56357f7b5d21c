"""How a model's features become its float32 input matrix, as its manifest declares: numeric
features in declared order, then each categorical feature one-hot over its declared categories
(or as one ordinal column). Training and serving both use this, so they cannot disagree."""
import numpy as np
from flywheel.schemas.features import FeatureSpec


class MatrixLayout:
    def __init__(self, spec: FeatureSpec, encoding: str = "onehot"):
        self.spec = spec
        self.encoding = encoding
        self.numeric = [f.name for f in spec.numeric]
        self.categorical = spec.categorical
        self.width = len(self.numeric)
        # column of each (feature, category) for one-hot; of each feature for ordinal
        self.columns: list[dict[str, int]] = []
        self.first_column: list[int] = []
        for f in self.categorical:
            self.first_column.append(self.width)
            self.columns.append({c: self.width + i if encoding == "onehot" else i
                                 for i, c in enumerate(f.categories)})
            self.width += len(f.categories) if encoding == "onehot" else 1

    def encode_categories(self, matrix: np.ndarray, row: int, index: int, category: str | None) -> None:
        """Write one categorical value into its row (None: all zeros / -1 ordinal)."""
        if self.encoding == "onehot":
            if category is not None:
                matrix[row, self.columns[index][category]] = 1.0
        else:
            matrix[row, self.first_column[index]] = -1.0 if category is None else self.columns[index][category]

    def build(self, numeric: np.ndarray, categorical: list[list[str | None]] | None = None) -> np.ndarray:
        """Whole-dataset encoding for training: numeric (n, k) plus per-feature category columns."""
        n = numeric.shape[0]
        matrix = np.zeros((n, self.width), dtype=np.float32)
        matrix[:, :len(self.numeric)] = numeric
        for index, values in enumerate(categorical or []):
            for row, value in enumerate(values):
                self.encode_categories(matrix, row, index, value)
        return matrix
