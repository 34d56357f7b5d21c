"""A batch of raw request messages for one model becomes one float32 matrix, in one pass:
size check, decode, validation against the feature spec, categorical encoding. Records that
cannot be served come back as failures with their dead-letter reason; the rest go on."""
import math
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from schemas import AvroSerde, DecodeFailure
from schemas.errors import FeatureProblem
from schemas.features import FeatureSpec

from processors.models import MatrixLayout


@dataclass
class Failure:
    index: int          # position in the batch
    reason: str
    detail: str


@dataclass
class FeatureBatch:
    indices: list[int]                 # batch positions of the rows of `matrix`
    records: list[dict]                # decoded requests, one per row
    matrix: np.ndarray                 # (rows, width) float32
    failures: list[Failure] = field(default_factory=list)


class RequestDecoder:
    def __init__(self, serde: AvroSerde, layout: MatrixLayout, max_bytes: int):
        self.serde = serde
        self.layout = layout
        self.spec: FeatureSpec = layout.spec
        self.max_bytes = max_bytes
        self.k = len(layout.numeric)
        self._get_all = itemgetter(*layout.numeric) if self.k > 1 else None

    def decode(self, values: list[bytes | None]) -> FeatureBatch:
        failures: list[Failure] = []
        sized = []
        for i, v in enumerate(values):
            if v is not None and len(v) > self.max_bytes:
                failures.append(Failure(i, "oversize", f"{len(v)} bytes is over the {self.max_bytes}-byte limit"))
            else:
                sized.append(i)
        decoded = self.serde.decode_many([values[i] for i in sized])
        indices, records, rows, slow = [], [], [], []
        for i, record in zip(sized, decoded):
            if isinstance(record, DecodeFailure):
                failures.append(Failure(i, record.reason, record.detail))
                continue
            try:
                row, checked = self._numeric_row(record)
            except FeatureProblem as e:
                failures.append(Failure(i, e.reason, str(e)))
                continue
            indices.append(i)
            records.append(record)
            rows.append(row)
            if checked:
                slow.append(len(rows) - 1)
        matrix = np.zeros((len(rows), self.layout.width), dtype=np.float32)
        if rows and self.k:
            with np.errstate(over="ignore"):
                matrix[:, :self.k] = np.asarray(rows, dtype=np.float64)
        keep = self._finite(matrix, slow, indices, failures)
        keep = self._categoricals(matrix, records, keep, indices, failures)
        if len(keep) < len(records):
            indices = [indices[j] for j in keep]
            records = [records[j] for j in keep]
            matrix = matrix[keep]
        failures.sort(key=lambda f: f.index)
        return FeatureBatch(indices, records, matrix, failures)

    def _numeric_row(self, record: dict) -> tuple[list[float] | np.ndarray, bool]:
        """The numeric part of a row, and whether it was fully checked already (slow path)."""
        dense = record.get("dense")
        if dense is not None:
            if len(dense) != 4 * self.k:
                raise FeatureProblem("dense", "wrong_shape",
                                     f"dense holds {len(dense) // 4} float32 values, the model has {self.k} numeric features")
            return np.frombuffer(dense, dtype="<f4"), False
        numeric = record["numeric"]
        if self._get_all is not None:
            try:
                row = list(self._get_all(numeric))
                if None not in row:
                    return row, False
            except KeyError:
                pass
        elif self.k == 1:
            value = numeric.get(self.layout.numeric[0])
            if value is not None:
                return [value], False
        return self._slow_row(numeric, record["categorical"]), True

    def _slow_row(self, numeric: dict, categorical: dict) -> list[float]:
        self.spec.check(numeric, categorical)  # raises FeatureProblem with the dead-letter reason
        row = []
        for f in self.spec.numeric:
            value = numeric.get(f.name)
            if value is None:
                value = float(f.default) if f.default is not None else math.nan
            row.append(value)
        return row

    def _finite(self, matrix: np.ndarray, checked: list[int], indices: list[int], failures: list[Failure]) -> list[int]:
        numeric = matrix[:, :self.k]
        bad = ~np.isfinite(numeric).all(axis=1)
        if checked:
            bad[checked] = False  # the slow path checked these; NaN there means "optional, missing"
        keep = np.flatnonzero(~bad).tolist()
        for j in np.flatnonzero(bad):
            column = int(np.flatnonzero(~np.isfinite(numeric[j]))[0])
            failures.append(Failure(indices[j], "non_finite",
                                    f"feature '{self.layout.numeric[column]}': value {numeric[j, column]} is not a finite float32"))
        return keep

    def _categoricals(self, matrix: np.ndarray, records: list[dict], keep: list[int], indices: list[int],
                      failures: list[Failure]) -> list[int]:
        if not self.layout.categorical:
            return keep
        out = []
        for j in keep:
            categorical = records[j]["categorical"]
            try:
                for index, f in enumerate(self.layout.categorical):
                    value = categorical.get(f.name)
                    if value is None:
                        if records[j]["numeric"].get(f.name) is not None:
                            raise FeatureProblem(f.name, "wrong_type", "expected categorical, got a number")
                        if f.default is None and f.required:
                            raise FeatureProblem(f.name, "missing_feature", "required and missing")
                        value = f.default
                    elif value not in self.layout.columns[index]:
                        if not f.unknown_bucket:
                            raise FeatureProblem(f.name, "unseen_category", f"category {value!r} was not seen in training")
                        value = f.unknown_bucket
                    self.layout.encode_categories(matrix, j, index, value)
                out.append(j)
            except FeatureProblem as e:
                failures.append(Failure(indices[j], e.reason, str(e)))
        return out
