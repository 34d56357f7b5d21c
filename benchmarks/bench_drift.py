"""Detection quality of the loop's decisions on standard drift streams, as a markdown table.

Streams from river's synthetic generators (the drift literature's usual benchmarks):
- agrawal-abrupt: Agrawal classification function 0 -> 2 at the drift point (pure concept drift:
  P(y|x) changes, P(x) does not);
- agrawal-gradual: the same change blended in over `--width` records (river's ConceptDriftStream);
- sea-covariate: SEA variant 0 -> 3 with feature x0 shifted by +3 at the drift point.

The decision code is the loop's own, run in-process on stream time (the shared 2-core machine
cannot host the full stack at 200 requests/s for three streams within the benchmark's budget):
predictions of the live version go through the monitor's windows (WindowedMonitor, the per-model
false-alarm budget, the reference of each version), labels arrive `--label-delay` seconds late
and feed the trigger's policy and ADWIN error stream (processors/trigger), a request is served
as the retrainer does it (feedback from the requested range, each request once, the most recent
20% held out, accepted if it beats the incumbent by 0.01) and the candidate is promoted at once
(no canary stage: the rollout's judgement is not what is measured here). The model is
scikit-learn's GradientBoostingClassifier, as a user's own model would be.

Reported per stream: detection delay in records after the drift point (monitor feature-drift flag,
label detector, retrain request), and next to it river's ADWIN, DDM and Page-Hinkley on the same
error stream (the never-retrained model's, labels equally late); false alarms on the stationary
part; accuracy before the drift, after it (never retrained), after the automatic promotion, and
of a model retrained at the drift point on as many post-drift rows as the loop's candidate had.

    .venv/bin/python benchmarks/bench_drift.py [--stationary 24000] [--after 12000] [--rate 200]
"""
import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flywheel.feature_store import FeedbackRecord  # noqa: E402
from flywheel.processors.monitor.drift import DriftThresholds  # noqa: E402
from flywheel.processors.monitor.performance import performance  # noqa: E402
from flywheel.processors.monitor.process import window_row  # noqa: E402
from flywheel.processors.monitor.profile import build_reference  # noqa: E402
from flywheel.processors.monitor.windows import WindowedMonitor  # noqa: E402
from flywheel.processors.retrainer.dataset import EmptyDataset, split  # noqa: E402
from flywheel.processors.trigger.detector import ErrorStreams  # noqa: E402
from flywheel.processors.trigger.policy import ModelState, decide, retrain_request  # noqa: E402
from flywheel.processors.trigger.process import drift_history  # noqa: E402
from flywheel.processors.trigger.settings import TriggerSettings  # noqa: E402
from flywheel.schemas.features import Feature, FeatureSpec  # noqa: E402
from river import drift as river_drift  # noqa: E402
from river.datasets import synth  # noqa: E402
from river.drift import binary as river_binary  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier  # noqa: E402

TRAIN_ROWS = 5000
MIN_IMPROVEMENT = 0.01
WINDOW_SECONDS = 1.0
STEP_SECONDS = 0.5          # how often the trigger evaluates (stream time)


@dataclass
class Stream:
    name: str
    x: np.ndarray            # (n, features) float
    y: np.ndarray            # (n,) str labels
    names: list[str]
    drift_at: int            # record index of the drift point (centre of a gradual drift)
    stable_until: int        # record index where the stationary part ends (a gradual drift starts earlier)


def agrawal(n: int, drift_at: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    before, after = synth.Agrawal(classification_function=0, seed=seed), synth.Agrawal(classification_function=2,
                                                                                         seed=seed + 1)
    if width > 1:
        rows = list(synth.ConceptDriftStream(before, after, position=drift_at, width=width, seed=seed).take(n))
    else:
        rows = list(before.take(drift_at)) + list(after.take(n - drift_at))
    names = list(rows[0][0])
    return (np.array([[r[k] for k in names] for r, _ in rows], dtype=float),
            np.array([str(y) for _, y in rows]), names)


def sea_covariate(n: int, drift_at: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    before = list(synth.SEA(variant=0, noise=0.1, seed=seed).take(drift_at))
    after = list(synth.SEA(variant=3, noise=0.1, seed=seed + 1).take(n - drift_at))
    x = np.array([[r[i] for i in range(3)] for r, _ in before + after], dtype=float)
    x[drift_at:, 0] += 3.0
    return x, np.array([str(bool(y)) for _, y in before + after]), ["x0", "x1", "x2"]


def gbt(x: np.ndarray, y: np.ndarray) -> GradientBoostingClassifier:
    return GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(x, y)


@dataclass
class Version:
    name: str
    model: GradientBoostingClassifier
    since: int                               # record index it went live at
    windows: list = field(default_factory=list)      # its WindowMetrics rows, as the store holds them


@dataclass
class Outcome:
    monitor_flag: int | None = None          # records after the drift point
    detector: int | None = None
    request: int | None = None
    reasons: str = ""
    river: dict[str, int | None] = field(default_factory=dict)
    false_flags: int = 0                     # monitor flags before the drift point
    false_detections: int = 0
    false_requests: int = 0
    after_promotion_flags: int = 0           # monitor flags of promoted versions
    windows_before: int = 0
    promoted_at: int | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def run(stream: Stream, rate: float, label_delay: float) -> Outcome:
    started = time.perf_counter()
    ms = 1000.0 / rate
    spec = FeatureSpec(tuple(Feature(n) for n in stream.names))
    thresholds = DriftThresholds(window_seconds=WINDOW_SECONDS)
    settings = TriggerSettings(new_labels=0, max_age_seconds=0, cooldown_seconds=15, lookback_seconds=60,
                               dataset_seconds=120)
    first = gbt(stream.x[:int(TRAIN_ROWS * 0.8)], stream.y[:int(TRAIN_ROWS * 0.8)])
    references = {"v1": reference(spec, first, stream.x[:TRAIN_ROWS], stream.x[int(TRAIN_ROWS * 0.8):TRAIN_ROWS],
                                  stream.names)}
    monitor = WindowedMonitor(int(WINDOW_SECONDS * 1000), 0, lambda m, v: references.get(v), thresholds)
    errors = ErrorStreams(settings.change_delta)
    live = Version("v1", first, TRAIN_ROWS)
    versions = {"v1": live}
    served = np.empty(len(stream.y), dtype=object)
    feedback: list[FeedbackRecord] = []
    out = Outcome()
    last_request = None
    step = int(STEP_SECONDS * rate)
    delay = int(label_delay * rate)
    labelled = TRAIN_ROWS
    for now_i in range(TRAIN_ROWS + step, len(stream.y) + 1, step):
        batch = slice(now_i - step, now_i)
        proba = live.model.predict_proba(stream.x[batch])
        labels = live.model.classes_[proba.argmax(axis=1)]
        served[batch] = labels
        monitor.add_predictions([{"model": "m", "model_version": live.name, "predicted_at": int(i * ms),
                                  "numeric": dict(zip(stream.names, map(float, stream.x[i]))),
                                  "confidence": float(c), "label": str(lab)}
                                 for i, c, lab in zip(range(batch.start, batch.stop), proba.max(axis=1), labels)])
        now = int(now_i * ms)
        for r in monitor.close_due(now):
            versions[r.version].windows.append(window_row(r, now))
            if r.drift:
                if r.drift_flagged:
                    if r.end_ms <= stream.stable_until * ms:
                        out.false_flags += 1
                    elif out.monitor_flag is None:
                        out.monitor_flag = now_i - stream.drift_at
                    if r.version != "v1":
                        out.after_promotion_flags += 1
                elif r.end_ms <= stream.stable_until * ms:
                    out.windows_before += 1
        new = []
        for i in range(labelled, max(labelled, now_i - delay)):
            new.append(FeedbackRecord(f"r{i}", "e", "m", _version_at(versions, i), int(i * ms), int(i * ms),
                                      int((i + delay) * ms), dict(zip(stream.names, map(float, stream.x[i]))), {},
                                      str(served[i]), None, {}, None, str(stream.y[i])))
        labelled = max(labelled, now_i - delay)
        feedback += new
        state = ModelState("m", live.name, int(live.since * ms), last_request_ms=last_request)
        lookback = now - int(settings.lookback_seconds * 1000)
        recent_windows = [w for w in live.windows if w.window_start >= lookback]
        state.flagged_windows, state.flagged_since = drift_history(recent_windows)
        recent = [f for f in feedback[-int(settings.lookback_seconds * rate):] if f.model_version == live.name]
        state.performance = performance([{"true_label": f.true_label, "predicted_label": f.predicted_label}
                                         for f in recent])
        state.change = errors.observe("m", live.name, [f for f in new if f.model_version == live.name])
        if state.change is not None and live.name == "v1":
            at = int(state.change.detected_at / ms)
            if at < stream.stable_until:
                out.false_detections += 1
            elif out.detector is None:
                out.detector = at - stream.drift_at
        decision = decide(state, settings, now)
        if not decision.request:
            continue
        request = retrain_request(state, decision, settings, now)
        last_request = now
        if now_i <= stream.stable_until:
            out.false_requests += 1
        elif out.request is None:
            out.request, out.reasons = now_i - stream.drift_at, "+".join(decision.reasons)
        candidate = retrain(spec, feedback, request, live.model)
        if candidate is not None:
            model, training = candidate
            name = f"v{len(versions) + 1}"
            references[name] = reference(spec, model, training.reference.numeric, training.holdout.numeric,
                                         stream.names)
            live = versions[name] = Version(name, model, now_i)
            out.promoted_at = out.promoted_at or now_i
            out.accuracy["retrained_rows"] = float(len(training.train))
    out.river = river_detectors(stream, first.predict(stream.x), delay)
    out.accuracy.update(accuracies(stream, first, served, out))
    out.seconds = time.perf_counter() - started
    return out


def _version_at(versions: dict[str, Version], i: int) -> str:
    return max((v for v in versions.values() if v.since <= i), key=lambda v: v.since).name


def reference(spec: FeatureSpec, model, x: np.ndarray, validation: np.ndarray, names: list[str]):
    """As processors/retrainer/reference.py builds it: every row, the version's answers on its validation rows."""
    proba = model.predict_proba(validation)
    return build_reference(spec, {n: x[:, k] for k, n in enumerate(names)}, {}, proba.max(axis=1).tolist(),
                           model.classes_[proba.argmax(axis=1)].tolist())


def retrain(spec: FeatureSpec, feedback: list[FeedbackRecord], request: dict, incumbent):
    """What the retrainer does with a request, minus ONNX: None when the candidate is rejected."""
    wanted = request["dataset"]
    rows = [f for f in feedback if wanted["start_time"] <= f.event_time <= wanted["end_time"]]
    try:
        training = split(rows, "m", spec, (wanted["start_time"], wanted["end_time"]), wanted["holdout_share"],
                         wanted["hard_example_share"])
    except EmptyDataset:
        return None
    model = gbt(training.train.numeric, training.train.target)
    holdout = training.holdout
    gain = np.mean(model.predict(holdout.numeric) == holdout.target) - np.mean(
        incumbent.predict(holdout.numeric) == holdout.target)
    return (model, training) if gain >= MIN_IMPROVEMENT else None


def river_detectors(stream: Stream, predicted: np.ndarray, delay: int) -> dict[str, int | None]:
    """First firing after the drift point of each river detector on the never-retrained model's
    error stream, in records after the drift point (labels arrive `delay` records late), and how
    often each fired before it."""
    errors = (predicted != stream.y).astype(float)
    out: dict[str, int | None] = {}
    for name, detector in (("ADWIN", river_drift.ADWIN(delta=0.002)), ("DDM", river_binary.DDM()),
                           ("Page-Hinkley", river_drift.PageHinkley(mode="up"))):
        out[name], out[f"{name} false"] = None, 0
        for i in range(TRAIN_ROWS, len(errors)):
            detector.update(errors[i])
            if detector.drift_detected:
                if i + delay < stream.stable_until:
                    out[f"{name} false"] += 1
                else:
                    out[name] = i + delay - stream.drift_at
                    break
    return out


def accuracies(stream: Stream, first, served: np.ndarray, out: Outcome) -> dict[str, float]:
    p, y = stream.drift_at, stream.y
    never = first.predict(stream.x)
    acc = {"before": float(np.mean(served[TRAIN_ROWS:p] == y[TRAIN_ROWS:p])),
           "after, never retrained": float(np.mean(never[p:] == y[p:]))}
    if out.promoted_at is not None:
        tail = slice(out.promoted_at, len(y))
        acc["after promotion"] = float(np.mean(served[tail] == y[tail]))
        acc["never retrained, same rows"] = float(np.mean(never[tail] == y[tail]))
        n = int(out.accuracy["retrained_rows"])
        oracle = gbt(stream.x[p:p + n], y[p:p + n])
        acc["retrained at the drift point"] = float(np.mean(oracle.predict(stream.x[tail]) == y[tail]))
    return acc


def streams(stationary: int, after: int, width: int) -> list[Stream]:
    n = TRAIN_ROWS + stationary + after
    p = TRAIN_ROWS + stationary
    out = []
    x, y, names = agrawal(n, p, 0, seed=1)
    out.append(Stream("agrawal-abrupt", x, y, names, p, p))
    x, y, names = agrawal(n, p, width, seed=2)
    out.append(Stream(f"agrawal-gradual ({width:,} records)", x, y, names, p, p - width))
    x, y, names = sea_covariate(n, p, seed=3)
    out.append(Stream("sea-covariate", x, y, names, p, p))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stationary", type=int, default=24_000, help="records before the drift point")
    parser.add_argument("--after", type=int, default=12_000, help="records after it")
    parser.add_argument("--width", type=int, default=2000, help="records a gradual drift takes")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second of stream time")
    parser.add_argument("--label-delay", type=float, default=2.0, help="seconds until a label arrives")
    args = parser.parse_args()
    print(f"{args.stationary} stationary records ({args.stationary / args.rate / WINDOW_SECONDS:.0f} monitor windows "
          f"of {WINDOW_SECONDS:g} s), {args.after} after the drift, {args.rate:g}/s, labels {args.label_delay:g} s "
          f"late ({int(args.label_delay * args.rate)} records)\n")
    print("| stream | monitor flag | label detector | retrain request (reason) | river ADWIN | DDM | Page-Hinkley "
          "| false flags / windows | false detections (ours, ADWIN, DDM, PH) | false requests | flags after promotion "
          "| acc. before | after, never retrained | after promotion | retrained at drift point |")
    print("|---" * 15 + "|")
    for stream in streams(args.stationary, args.after, args.width):
        o = run(stream, args.rate, args.label_delay)
        a, r = o.accuracy, o.river
        print(f"| {stream.name} | {_d(o.monitor_flag)} | {_d(o.detector)} | {_d(o.request)} ({o.reasons}) "
              f"| {_d(r['ADWIN'])} | {_d(r['DDM'])} | {_d(r['Page-Hinkley'])} "
              f"| {o.false_flags} / {o.false_flags + o.windows_before} "
              f"| {o.false_detections}, {r['ADWIN false']}, {r['DDM false']}, {r['Page-Hinkley false']} "
              f"| {o.false_requests} | {o.after_promotion_flags} | {a['before']:.3f} "
              f"| {a.get('never retrained, same rows', a['after, never retrained']):.3f} "
              f"| {a.get('after promotion', float('nan')):.3f} "
              f"| {a.get('retrained at the drift point', float('nan')):.3f} "
              f"({int(a.get('retrained_rows', 0))} rows) |", flush=True)
        print(f"<!-- {stream.name}: {o.seconds:.1f} s -->", flush=True)


def _d(records: int | None) -> str:
    return "—" if records is None else f"{records:,}"


if __name__ == "__main__":
    main()
