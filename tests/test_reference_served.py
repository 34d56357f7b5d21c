"""A version's drift reference is what it serves: the rows it was trained and validated on, each
once; judged against it, the windows right after a promotion (a canary's small share first, then
all traffic) raise no drift flag on the demo's stationary stream nor on a standard stream (river's
SEA), while a real shift is still flagged."""
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from flywheel.feature_store import FeedbackRecord
from flywheel.processors.monitor.drift import DriftThresholds
from flywheel.processors.monitor.profile import PREDICTED_SCORE
from flywheel.processors.monitor.windows import WindowedMonitor
from flywheel.processors.retrainer import dataset as datasets
from flywheel.processors.retrainer.reference import reference_profile
from flywheel.processors.retrainer.trainers import ReferenceTrainer
from flywheel.processors.retrainer.validate import outputs
from flywheel.processors.simulator.concept import Concept
from flywheel.processors.training import Dataset, train
from flywheel.schemas.features import Feature, FeatureSpec
from river.datasets import synth

WINDOW_MS = 1_000                         # the demo at speed 60: one-minute story windows, 1 s real
THRESHOLDS = DriftThresholds(window_seconds=WINDOW_MS / 1000)
RATE, CANARY_SHARE = 150, 0.3             # the demo's requests per window and canary share


def _answers(manifest, onnx: bytes, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    out = outputs(manifest, onnx, data)
    return out.max(axis=1), np.asarray(manifest.output.labels)[out.argmax(axis=1)]


def _feedback(data: Dataset, manifest, onnx: bytes, version: str, first: int = 0) -> list[FeedbackRecord]:
    confidence, labels = _answers(manifest, onnx, data)
    return [FeedbackRecord(f"r{first + i}", f"e{i}", "churn", version, first + i, first + i, first + i, row_numeric,
                           row_categorical, str(labels[i]), None, {}, float(confidence[i]), str(data.target[i]))
            for i, (row_numeric, row_categorical) in enumerate(_split_rows(data))]


def _split_rows(data: Dataset):
    names = [f.name for f in data.spec.numeric]
    for row in data.rows():
        yield {n: row[n] for n in names}, {k: v for k, v in row.items() if k not in names}


def _predictions(data: Dataset, manifest, onnx: bytes, window: int) -> list[dict]:
    confidence, labels = _answers(manifest, onnx, data)
    return [{"model": manifest.model, "model_version": manifest.version, "predicted_at": window * WINDOW_MS + i,
             "numeric": numeric, "categorical": categorical, "confidence": float(c), "label": str(label)}
            for i, ((numeric, categorical), c, label) in enumerate(zip(_split_rows(data), confidence, labels))]


def _serve(monitor: WindowedMonitor, sample, manifest, onnx: bytes, sizes: list[int]) -> list:
    results = []
    for w, n in enumerate(sizes):
        monitor.add_predictions(_predictions(sample(n), manifest, onnx, w))
        results += monitor.close_due((w + 1) * WINDOW_MS + 500)
    return results


@pytest.fixture(scope="module")
def promoted():
    """The demo's story up to a promotion: v1 trained before the drift, the drift, v1's labelled
    post-drift feedback (a third of it also answered by a shadow), a candidate retrained on it."""
    concept = Concept()
    before = concept.sample(3000, np.random.default_rng(0))
    v1 = train("churn", "v1", before.numeric, before.target, before.spec, before.categorical, low_confidence=0.6)
    concept.drift()
    after = concept.sample(1200, np.random.default_rng(1))
    rows = _feedback(after, v1.manifest, v1.onnx_bytes, "v1")
    rows += [replace(r, model_version="v1-shadow") for r in rows[::3]]
    rows.sort(key=lambda r: r.event_time)
    training = datasets.split(rows, "churn", after.spec, (0, 1200), 0.2, 0.5, 0.6)
    with tempfile.TemporaryDirectory() as work:
        path = datasets.save(training.train, Path(work) / "dataset.npz")
        candidate = ReferenceTrainer("mlp").train(path, Path(work), v1.manifest)
    manifest = replace(v1.manifest, version="v2", output=candidate.output)
    return concept, training, manifest, candidate.onnx_bytes


def test_reference_profiles_each_trained_or_validated_row_once(promoted):
    _, training, manifest, onnx = promoted
    assert training.hard_examples > 0 and len(training.train) == 960 + training.hard_examples
    assert len(training.holdout) == 240 and len(training.reference) == 1200      # shadow copies dropped
    reference = reference_profile(manifest, onnx, training.reference, training.holdout)
    assert reference.rows == 1200 and reference.numeric[PREDICTED_SCORE].count == 240    # answers on unseen rows


def test_demo_stream_right_after_a_promotion_raises_no_flag(promoted):
    concept, training, manifest, onnx = promoted
    reference = reference_profile(manifest, onnx, training.reference, training.holdout)
    monitor = WindowedMonitor(WINDOW_MS, 200, lambda model, version: reference, THRESHOLDS)
    rng = np.random.default_rng(2)
    canary = [int(RATE * CANARY_SHARE)] * 20           # 45 rows a window while the canary is judged
    results = _serve(monitor, lambda n: concept.sample(n, rng), manifest, onnx, canary + [RATE] * 100)
    judged = [r for r in results if r.drift]
    flags = [(r.start_ms // WINDOW_MS, r.flagged_features) for r in results if r.drift_flagged]
    worst = max((d.statistics["psi"], d.feature) for r in judged for d in r.drift)
    print(f"\n120 windows after the promotion, {len(judged)} judged: {len(flags)} drift flags; largest PSI "
          f"{worst[0]:.2f} ({worst[1]})")
    # The 20 canary windows are judged as 6 of 135 rows; the last two ride on into the first full one.
    assert len(results) == 120 and len(judged) == 106
    assert all(d.count >= THRESHOLDS.min_count for r in judged for d in r.drift)
    assert flags == []

    concept.means[3] += 1.0                               # then a real covariate shift of x3
    drifted = _serve(monitor, lambda n: concept.sample(n, rng), manifest, onnx, [RATE] * 3)
    assert all("x3" in r.flagged_features for r in drifted)


SEA_SPEC = FeatureSpec(tuple(Feature(f"x{i}", min=0.0, max=10.0) for i in range(3)))


def _sea(n: int, seed: int, shift: float = 0.0) -> Dataset:
    rows = list(synth.SEA(variant=0, noise=0.1, seed=seed).take(n))
    x = np.array([[r[i] for i in range(3)] for r, _ in rows], dtype=np.float32)
    x[:, 2] += shift
    return Dataset(x, [], np.array([str(bool(y)) for _, y in rows]), SEA_SPEC)


@pytest.fixture(scope="module")
def sea_model():
    """Boosted trees retrained on 400 rows of river's SEA stream (320 trained on, 80 validation)."""
    history = _sea(400, seed=1)
    return history, train("sea", "v1", history.numeric, history.target, SEA_SPEC, kind="gbt")


def test_standard_stream_sea_stays_quiet_for_150_windows_after_a_promotion_and_flags_a_covariate_shift(sea_model):
    history, model = sea_model
    reference = reference_profile(model.manifest, model.onnx_bytes, history, history.part(320))
    monitor = WindowedMonitor(WINDOW_MS, 200, lambda m, v: reference, THRESHOLDS)
    seeds = iter(range(100, 10_000))
    results = _serve(monitor, lambda n: _sea(n, next(seeds)), model.manifest, model.onnx_bytes,
                     [60] * 10 + [200] * 150)
    flags = [(r.start_ms // WINDOW_MS, r.flagged_features) for r in results if r.drift_flagged]
    assert sum(bool(r.drift) for r in results) == 155 and flags == []
    drifted = _serve(monitor, lambda n: _sea(n, next(seeds), shift=3.0), model.manifest, model.onnx_bytes, [200] * 2)
    assert all("x2" in r.flagged_features for r in drifted)


def test_answers_on_the_versions_own_training_rows_would_flag_its_score_at_once(sea_model):
    """Why the reference takes the version's answers on its validation rows: the trees are surer of
    the rows they were fitted to than of anything live."""
    history, model = sea_model
    seeds = iter(range(100, 10_000))
    reference = reference_profile(model.manifest, model.onnx_bytes, history, history.part(0, 320))
    monitor = WindowedMonitor(WINDOW_MS, 200, lambda m, v: reference, THRESHOLDS)
    results = _serve(monitor, lambda n: _sea(n, next(seeds)), model.manifest, model.onnx_bytes, [200] * 30)
    flagged = sum(PREDICTED_SCORE in r.flagged_features for r in results)
    print(f"\nreference answers from the training rows: {flagged} of 30 stationary windows flag prediction.score")
    assert flagged >= 3
