"""Profiles: mergeable summaries of a model's inputs and outputs over some stretch of data.

One class serves both sides of every comparison. The reference profile is built from a
version's training data at registration and stored as bytes; a window profile is built from
live predictions over one tumbling window, shaped like its reference (same spec, same known
categories) so counts of out-of-range values and unseen categories are exact.

Numeric features and the predicted score are summarised by KLL sketches, categorical features
and the predicted label by frequent-items sketches (Apache DataSketches), plus exact counts of
missing values, values outside the declared range and categories the reference never saw.
"""
import base64
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from datasketches import frequent_items_error_type, frequent_strings_sketch, kll_doubles_sketch
from flywheel.schemas.features import Feature, FeatureSpec
from flywheel.schemas.wire.factor import Factor
from flywheel.schemas.wire.prediction import PredictionColumns

from flywheel.errors import BadRecord

# The prediction itself is profiled like two more features.
PREDICTED_SCORE = "prediction.score"
PREDICTED_LABEL = "prediction.label"

REFERENCE_K = 1000       # reference profiles are built once, offline: spend memory on accuracy
WINDOW_K = 200           # KLL default; exact below about k values per window
FREQUENT_LG_MAX = 10     # frequent-items map of 1024 slots: exact up to 768 distinct categories


class ProfileError(BadRecord, ValueError):
    """A reference profile's bytes or training columns are not a usable profile: its content."""


@dataclass
class NumericSummary:
    sketch: kll_doubles_sketch
    missing: int = 0
    out_of_range: int = 0

    @property
    def count(self) -> int:
        return self.sketch.n

    def rank_error(self) -> float:
        return rank_error(self.sketch)


@dataclass
class CategoricalSummary:
    sketch: frequent_strings_sketch
    missing: int = 0
    unseen: int = 0

    @property
    def count(self) -> int:
        return self.sketch.total_weight

    def counts(self) -> dict[str, float]:
        items = self.sketch.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES)
        return {item: float(estimate) for item, estimate, _, _ in items}

    def count_error(self) -> float:
        """Largest error of any one category's count: 0 while the sketch holds every category."""
        return float(self.sketch.get_apriori_error(FREQUENT_LG_MAX, self.count)) \
            if self.sketch.num_active_items >= 0.75 * (1 << FREQUENT_LG_MAX) else 0.0


@dataclass
class Profile:
    spec: FeatureSpec
    k: int = WINDOW_K
    rows: int = 0
    start_ms: int = 0
    end_ms: int = 0
    numeric: dict[str, NumericSummary] = field(default_factory=dict)
    categorical: dict[str, CategoricalSummary] = field(default_factory=dict)
    # Categories the reference knows, per feature (declared ones plus those seen in training).
    known: dict[str, frozenset[str]] = field(default_factory=dict)
    # A window's profile keeps only the features its reference has (the model's spec, as trained):
    # names in records come from whoever wrote them, and each would be a sketch, stored bytes and
    # metric series. None keeps every name. What it leaves out is counted in `ignored` (this
    # window's, neither stored nor merged).
    keep: frozenset[str] | None = None
    ignored: int = 0

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end_ms - self.start_ms) / 1000)

    @property
    def rate(self) -> float:
        """Rows per second over the profile's time span (0 when the span is unknown)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def numeric_summary(self, name: str) -> NumericSummary:
        if name not in self.numeric:
            self.numeric[name] = NumericSummary(kll_doubles_sketch(self.k))
        return self.numeric[name]

    def categorical_summary(self, name: str) -> CategoricalSummary:
        if name not in self.categorical:
            self.categorical[name] = CategoricalSummary(frequent_strings_sketch(FREQUENT_LG_MAX))
        return self.categorical[name]

    def empty_like(self, start_ms: int = 0, end_ms: int = 0) -> "Profile":
        """A window profile shaped like this reference: same spec and known categories."""
        names = {f.name for f in self.spec.features} | set(self.numeric) | set(self.categorical)
        return Profile(self.spec, WINDOW_K, 0, start_ms, end_ms, known=self.known,
                       keep=frozenset(names | {PREDICTED_SCORE, PREDICTED_LABEL}))

    def add_columns(self, rows: int, numeric: dict[str, Iterable[float | None]],
                    categorical: dict[str, Iterable[str | None] | Factor]) -> None:
        """Add `rows` records given column-wise (None or NaN is a missing value)."""
        self.rows += rows
        for name, values in numeric.items():
            self._add_numeric(name, _floats(values))
        for name, values in categorical.items():
            counts = values.counts() if isinstance(values, Factor) else Counter(values)
            if self._keeps(name):
                self._add_categorical(name, counts)
            else:
                self.ignored += sum(n for item, n in counts.items() if item is not None)

    def _keeps(self, name: str) -> bool:
        return self.keep is None or name in self.keep

    def _add_numeric(self, name: str, values: np.ndarray) -> None:
        present = values[~np.isnan(values)]
        if not self._keeps(name):
            self.ignored += int(present.size)
            return
        summary = self.numeric_summary(name)
        summary.missing += int(values.size - present.size)
        if present.size:
            summary.sketch.update(present)
        feature = self.spec.get(name)
        if feature is not None:
            summary.out_of_range += _outside(present, feature)

    def _add_categorical(self, name: str, counts: dict[str | None, int]) -> None:
        summary = self.categorical_summary(name)
        summary.missing += counts.pop(None, 0)
        known = self.known.get(name)
        for item, count in counts.items():
            summary.sketch.update(item, count)
            if known is not None and item not in known:
                summary.unseen += count

    def add_predictions(self, predictions: PredictionColumns, rows: np.ndarray) -> None:
        """Add records `rows` of a batch decoded as columns: what `add_records` adds for dicts."""
        n = len(rows)
        numeric = predictions.numeric.columns(rows)
        categorical = predictions.categorical.columns(rows)
        for feature in self.spec.numeric:
            numeric.setdefault(feature.name, np.full(n, math.nan))
        for feature in self.spec.categorical:
            categorical.setdefault(feature.name, Factor(np.zeros(n, dtype=np.int64), [None]))
        numeric[PREDICTED_SCORE] = np.where(predictions.has_value, predictions.value, predictions.confidence)[rows]
        labels = predictions.label.take(rows)
        if any(label is not None for label in labels.counts()):
            categorical[PREDICTED_LABEL] = labels
        self.add_columns(n, numeric, categorical)

    def add_records(self, records: list[dict]) -> None:
        """Add Prediction or FeedbackRecord dicts: their features and what was predicted."""
        if not records:
            return
        numeric_names = {n for r in records for n in r.get("numeric", {})} | {f.name for f in self.spec.numeric}
        categorical_names = ({n for r in records for n in r.get("categorical", {})}
                             | {f.name for f in self.spec.categorical})
        numeric = {n: [r.get("numeric", {}).get(n) for r in records] for n in numeric_names}
        categorical = {n: [r.get("categorical", {}).get(n) for r in records] for n in categorical_names}
        numeric[PREDICTED_SCORE] = [predicted_score(r) for r in records]
        labels = [r.get("label", r.get("predicted_label")) for r in records]
        if any(label is not None for label in labels):
            categorical[PREDICTED_LABEL] = labels
        self.add_columns(len(records), numeric, categorical)

    def merge(self, other: "Profile") -> None:
        """Fold another profile of the same model in (e.g. hourly windows into a day)."""
        self.start_ms = min(self.start_ms, other.start_ms) if self.rows else other.start_ms
        self.end_ms = max(self.end_ms, other.end_ms)
        self.rows += other.rows
        for name, s in other.numeric.items():
            mine = self.numeric_summary(name)
            mine.sketch.merge(s.sketch)
            mine.missing += s.missing
            mine.out_of_range += s.out_of_range
        for name, s in other.categorical.items():
            mine = self.categorical_summary(name)
            mine.sketch.merge(s.sketch)
            mine.missing += s.missing
            mine.unseen += s.unseen

    def to_bytes(self) -> bytes:
        body = {
            "format": 1, "spec": self.spec.to_dict(), "k": self.k, "rows": self.rows,
            "start_ms": self.start_ms, "end_ms": self.end_ms,
            "known": {n: sorted(c) for n, c in self.known.items()},
            "numeric": {n: {"sketch": _b64(s.sketch.serialize()), "missing": s.missing,
                            "out_of_range": s.out_of_range} for n, s in self.numeric.items()},
            "categorical": {n: {"sketch": _b64(s.sketch.serialize()), "missing": s.missing,
                                "unseen": s.unseen} for n, s in self.categorical.items()},
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Profile":
        try:
            body = json.loads(data)
            if body.get("format") != 1:
                raise ProfileError(f"profile format {body.get('format')!r} is not 1")
            return cls(
                FeatureSpec.from_dict(body["spec"]), body["k"], body["rows"], body["start_ms"], body["end_ms"],
                numeric={n: NumericSummary(kll_doubles_sketch.deserialize(base64.b64decode(s["sketch"])),
                                           s["missing"], s["out_of_range"]) for n, s in body["numeric"].items()},
                categorical={n: CategoricalSummary(frequent_strings_sketch.deserialize(base64.b64decode(s["sketch"])),
                                                   s["missing"], s["unseen"])
                             for n, s in body["categorical"].items()},
                known={n: frozenset(c) for n, c in body["known"].items()})
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise ProfileError(f"not a Flywheel profile: {e}") from e


def build_reference(spec: FeatureSpec, numeric: dict[str, Iterable[float | None]],
                    categorical: dict[str, Iterable[str | None]], scores: Iterable[float | None] = (),
                    labels: Iterable[str | None] = (), start_ms: int = 0, end_ms: int = 0) -> Profile:
    """The reference profile of a model version from its training data, given column-wise.

    `scores`/`labels` are the version's own predictions on that data (score: the regressor's value
    or the classifier's confidence). `start_ms`/`end_ms` span the data's event times, from which
    the expected volume (rows per second) follows; leave them 0 to skip the volume rule.
    """
    numeric = {n: list(v) for n, v in numeric.items()}
    categorical = {n: list(v) for n, v in categorical.items()}
    lengths = {len(v) for v in (*numeric.values(), *categorical.values())}
    if len(lengths) > 1:
        raise ProfileError(f"training columns differ in length: {sorted(lengths)}")
    rows = lengths.pop() if lengths else 0
    scores, labels = list(scores), list(labels)
    if scores:
        numeric[PREDICTED_SCORE] = scores
    if labels:
        categorical[PREDICTED_LABEL] = labels
    profile = Profile(spec, REFERENCE_K, 0, start_ms, end_ms)
    profile.add_columns(rows, numeric, categorical)
    profile.known = known_categories(profile)
    return profile


def known_categories(reference: Profile) -> dict[str, frozenset[str]]:
    """What a reference knows of each categorical feature: the categories its rows hold and those
    the spec declares; a window's other categories are counted as unseen."""
    return {name: frozenset(s.counts()) | frozenset(_declared(reference.spec.get(name)))
            for name, s in reference.categorical.items()}


def rank_error(sketch: kll_doubles_sketch) -> float:
    """A KLL sketch's single-query normalised rank error (99% confidence); 0 while it is exact."""
    return sketch.normalized_rank_error(False) if sketch.is_estimation_mode() else 0.0


def predicted_score(record: dict) -> float | None:
    """The number that stands for a prediction: a regressor's value, else the confidence."""
    value = record.get("value", record.get("predicted_value"))
    return value if value is not None else record.get("confidence")


def _floats(values: Iterable[float | None]) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values
    return np.asarray([math.nan if v is None else v for v in values], dtype=float)


def _declared(feature: Feature | None) -> tuple[str, ...]:
    if feature is None:
        return ()
    return feature.categories + ((feature.unknown_bucket,) if feature.unknown_bucket else ())


def _outside(values: np.ndarray, feature: Feature) -> int:
    below = int(np.count_nonzero(values < feature.min)) if feature.min is not None else 0
    above = int(np.count_nonzero(values > feature.max)) if feature.max is not None else 0
    return below + above


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
