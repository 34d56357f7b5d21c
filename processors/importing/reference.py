"""A version's reference profile rebuilt from rows other than those it was imported or trained
with: a file in its sample's columns (its answers taken by running it, as the import does), or its
own stored feedback over a time range (the features it saw and the answers it gave), e.g. to
re-baseline after a drift a person judged benign. The result replaces the stored profile; the
monitor reads it again within `[monitor] reference_refresh_seconds`."""
from collections.abc import Iterable
from itertools import islice

from flywheel.feature_store import FeedbackRecord
from flywheel.processors.importing.errors import ReferenceRefused
from flywheel.processors.importing.sample import Sample
from flywheel.processors.models import Manifest
from flywheel.processors.monitor.profile import PREDICTED_LABEL, PREDICTED_SCORE, REFERENCE_K, Profile, known_categories
from flywheel.processors.retrainer.reference import reference_profile
from flywheel.schemas.features import Feature

CHUNK = 10_000      # feedback records profiled at a time: a long range is never all in memory


def profile_of_rows(manifest: Manifest, onnx_bytes: bytes, sample) -> Profile:
    """`sample` (CSV path, dict of columns or DataFrame) profiled as the version reads it: every
    feature of its spec by name (other columns, such as a target, are left out), numeric ones as
    numbers, categorical ones as their text; the version's answers on the same rows."""
    rows = Sample.of(sample)
    if not len(rows):
        raise ReferenceRefused("the rows are empty")
    spec = manifest.features
    missing = [f.name for f in spec.features if f.name not in rows.columns]
    if missing:
        raise ReferenceRefused(f"the rows lack {len(missing)} of {manifest.model} {manifest.version}'s "
                               f"feature columns: {', '.join(missing)}")
    data = rows.with_numeric(tuple(f.name for f in spec.numeric)).dataset(spec, None)
    for feature, values in zip(spec.categorical, data.categorical):
        _check_categories(feature, values)
    return reference_profile(manifest, onnx_bytes, data, data)


def _check_categories(feature: Feature, values: list[str | None]) -> None:
    """Refuse a column that holds none of the feature's categories: another column under its name,
    or codes the version was not trained on. Some unseen categories are live data, not a mistake."""
    present = [v for v in values if v is not None]
    if feature.categories and present and not set(present) & set(feature.categories):
        raise ReferenceRefused(f"column {feature.name!r} holds none of the version's categories "
                               f"({', '.join(feature.categories)}), first {present[0][:40]!r}")


def profile_of_feedback(manifest: Manifest, records: Iterable[FeedbackRecord], where: str = "in that range") -> Profile:
    """The version's feedback profiled as the monitor profiles its live predictions, a chunk at a
    time; features outside its spec are left out. Refused when there is none (`where` says over
    what range)."""
    names = frozenset(f.name for f in manifest.features.features) | {PREDICTED_SCORE, PREDICTED_LABEL}
    profile = Profile(manifest.features, REFERENCE_K, keep=names)
    records = iter(records)
    while chunk := [r.to_dict() for r in islice(records, CHUNK)]:
        profile.add_records(chunk)
    if not profile.rows:
        raise ReferenceRefused(f"{manifest.model} {manifest.version} has no feedback {where}")
    profile.keep, profile.ignored = None, 0     # a reference keeps what it holds
    profile.known = known_categories(profile)
    return profile
