"""The windowed monitor on synthetic streams: a known drift point is flagged within a bounded
number of windows, and a long stationary stream raises no alarm at the default thresholds."""
import numpy as np
import pytest
from flywheel.processors.monitor.profile import build_reference
from flywheel.processors.monitor.windows import WindowedMonitor
from flywheel.schemas.features import Feature, FeatureSpec

SPEC = FeatureSpec((Feature("amount", min=-5, max=5), Feature("age", min=0, max=120),
                    Feature("channel", "categorical", categories=("web", "app", "shop"))))
CHANNELS, MIX = ["web", "app", "shop"], [0.5, 0.3, 0.2]
WINDOW_MS, PER_WINDOW = 10_000, 400
MAX_DELAY = 2       # windows after the drift point by which it must be flagged


def _draw(rng, n, shift=0.0, mix=MIX):
    return {"amount": rng.normal(shift, 1.0, n), "age": rng.gamma(4.0, 10.0, n),
            "channel": rng.choice(CHANNELS, n, p=mix)}


def _reference(rng):
    data = _draw(rng, 100_000)
    return build_reference(SPEC, {"amount": data["amount"], "age": data["age"]}, {"channel": data["channel"]},
                           scores=1 / (1 + np.exp(-data["amount"])), start_ms=0,
                           end_ms=100_000 * WINDOW_MS // PER_WINDOW)


def _predictions(rng, window: int, **drift) -> list[dict]:
    data = _draw(rng, PER_WINDOW, **drift)
    times = window * WINDOW_MS + np.sort(rng.integers(0, WINDOW_MS, PER_WINDOW))
    return [{"model": "m", "model_version": "1", "predicted_at": int(t),
             "numeric": {"amount": float(a), "age": float(g)}, "categorical": {"channel": str(c)},
             "confidence": float(1 / (1 + np.exp(-a))), "label": "yes" if a > 0 else "no"}
            for t, a, g, c in zip(times, data["amount"], data["age"], data["channel"])]


def _run(rng, windows: int, drift_at: int | None, **drift) -> list:
    reference = _reference(rng)
    monitor = WindowedMonitor(WINDOW_MS, 1_000, lambda model, version: reference)
    results = []
    for w in range(windows):
        after = drift_at is not None and w >= drift_at
        monitor.add_predictions(_predictions(rng, w, **(drift if after else {})))
        results += monitor.close_due((w + 1) * WINDOW_MS + 1_000)
    return results


def test_stationary_stream_of_120_windows_raises_no_alarm():
    results = _run(np.random.default_rng(1), 120, None)
    assert len(results) == 120 and all(r.has_reference for r in results)
    false_alarms = [r.start_ms // WINDOW_MS for r in results if r.drift_flagged]
    violations = [(r.start_ms // WINDOW_MS, q.feature, q.rule) for r in results for q in r.quality if q.violated]
    print(f"\nstationary: 120 windows x {PER_WINDOW} records, drift false alarms {len(false_alarms)}, "
          f"quality violations {len(violations)}")
    assert false_alarms == []
    assert violations == []


@pytest.mark.parametrize("drift,feature", [
    ({"shift": 0.75}, "amount"),
    ({"mix": [0.2, 0.3, 0.5]}, "channel"),
], ids=["numeric-mean-shift", "categorical-mix-change"])
def test_known_drift_point_is_flagged_within_bounded_windows(drift, feature):
    drift_at = 40
    results = _run(np.random.default_rng(2), 60, drift_at, **drift)
    flagged = [r.start_ms // WINDOW_MS for r in results if feature in r.flagged_features]
    false_alarms = [w for w in flagged if w < drift_at]
    delay = flagged[0] - drift_at if flagged and flagged[0] >= drift_at else None
    print(f"\n{feature} drift at window {drift_at}: detection delay {delay} window(s), "
          f"flagged {len([w for w in flagged if w >= drift_at])}/20 drifted windows, false alarms {len(false_alarms)}")
    assert false_alarms == []
    assert delay is not None and delay <= MAX_DELAY
