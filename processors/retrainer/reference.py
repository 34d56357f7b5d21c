"""A model version's drift reference: the rows it was trained and validated on (each once) profiled
with the monitor's sketches, plus the version's own answers on its validation rows, stored where
the monitor looks for it under the version's name.

The answers are taken on rows the version was not trained on: on its own training rows a flexible
model (boosted trees, an MLP on a few hundred rows) is more confident than it will ever be on live
traffic, and the first windows after its promotion would flag `prediction.score` for it."""
import time

import numpy as np
from flywheel.feature_store import FeatureStore, ReferenceProfile
from flywheel.processors.models import Manifest
from flywheel.processors.monitor.profile import Profile, build_reference
from flywheel.processors.retrainer.validate import outputs
from flywheel.processors.training import Dataset


def store_reference(store: FeatureStore, manifest: Manifest, onnx_bytes: bytes, data: Dataset,
                    validation: Dataset) -> None:
    profile = reference_profile(manifest, onnx_bytes, data, validation)
    store.put_profile(ReferenceProfile(manifest.model, manifest.version, int(time.time() * 1000),
                                       profile.to_bytes()))


def reference_profile(manifest: Manifest, onnx_bytes: bytes, data: Dataset, validation: Dataset) -> Profile:
    """`data`: every row the version was trained and validated on; `validation`: those it was not trained on."""
    out = outputs(manifest, onnx_bytes, validation)
    if manifest.output.task == "classifier":
        scores, labels = out.max(axis=1).tolist(), np.asarray(manifest.output.labels)[out.argmax(axis=1)].tolist()
    else:
        scores, labels = out[:, 0].tolist(), []
    numeric = {f.name: data.numeric[:, i].tolist() for i, f in enumerate(data.spec.numeric)}
    categorical = {f.name: data.categorical[i] for i, f in enumerate(data.spec.categorical)}
    return build_reference(data.spec, numeric, categorical, scores, labels)
