"""Feature specs: what a model expects of a request, declared in its manifest.

Per-record checks live here so the SDK (before sending) and any processor (on receipt) apply
the same rules. Declared ranges are not errors: values outside them are a data-quality signal
the monitor counts, not a reason to refuse a request.
"""
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from flywheel.schemas.errors import FeatureProblem, clip

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind = "numeric"
    required: bool = True
    default: float | str | None = None
    categories: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    unknown_bucket: str | None = None  # where unseen categories go; None: they are dead letters

    def __post_init__(self):
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"feature '{self.name}': kind must be numeric or categorical, not {self.kind!r}")


@dataclass(frozen=True)
class FeatureSpec:
    features: tuple[Feature, ...] = field(default_factory=tuple)

    @property
    def numeric(self) -> list[Feature]:
        return [f for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[Feature]:
        return [f for f in self.features if f.kind == "categorical"]

    def get(self, name: str) -> Feature | None:
        return next((f for f in self.features if f.name == name), None)

    def split(self, values: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, str | None]]:
        """Sort one flat name->value dict into numeric and categorical maps by the spec (or, for
        names the spec does not know, by the value's type)."""
        numeric: dict[str, float | None] = {}
        categorical: dict[str, str | None] = {}
        for name, value in values.items():
            feature = self.get(name)
            kind = feature.kind if feature else ("categorical" if isinstance(value, str) else "numeric")
            if kind == "categorical":
                categorical[name] = None if value is None else category_text(value)
            else:
                numeric[name] = _as_float(name, value)
        return numeric, categorical

    def check(self, numeric: dict[str, float | None], categorical: dict[str, str | None]) -> None:
        """Raise FeatureProblem for the first feature that cannot be served."""
        for f in self.features:
            source = numeric if f.kind == "numeric" else categorical
            other = categorical if f.kind == "numeric" else numeric
            value = source.get(f.name)
            if value is None and other.get(f.name) is not None:
                raise FeatureProblem(f.name, "wrong_type", f"expected {f.kind}, got {type(other[f.name]).__name__}")
            if value is None:
                if f.required and f.default is None:
                    raise FeatureProblem(f.name, "missing_feature", "required and missing")
                continue
            if f.kind == "numeric" and not math.isfinite(value):
                raise FeatureProblem(f.name, "non_finite", f"value {value} is not finite")
            if f.kind == "categorical" and f.categories and value not in f.categories and not f.unknown_bucket:
                raise FeatureProblem(f.name, "unseen_category",
                                     f"category {clip(repr(value))} was not seen in training")

    def to_dict(self) -> dict:
        return {"features": [asdict(f) for f in self.features]}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSpec":
        return cls(tuple(Feature(**{**f, "categories": tuple(f.get("categories", ()))})
                         for f in data.get("features", [])))


def category_text(value: Any) -> str:
    """A category as text; an integer code sent as a float (3.0, as JSON and pandas may send it)
    is the same category as 3."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FeatureProblem(name, "wrong_type", f"expected a number, got {type(value).__name__} {clip(repr(value))}")
    return float(value)
