"""bench_drift through the whole stack: an abrupt concept drift in a user's own model's traffic,
and when the running stack (broker, worker, joiner, trigger, retrainer, rollout as processes)
detects it, asks for a retrain, and promotes a new version; next to river's ADWIN on the same
error stream.

Starts `flywheel up` (no demo) on a fresh data dir and free ports, registers the user's model as
bench_drift.py trains it (scikit-learn GradientBoosting on river's Agrawal stream, function 0,
5,000 rows: 4,000 to train, 1,000 as the import's sample), then publishes requests at `--rate`
(their event time the send time) and each one's true label `--label-delay` seconds later;
`--stationary` seconds after the loop is seen flowing (every process answers its metrics
endpoint and a joined label is stored), the stream switches to Agrawal function 2 (pure concept
drift). The
stack runs with its documented settings but for the rules that would fire without a drift
(`new_labels`, `max_age`: off) and the retrainer's trainer (`reference:gbt`, boosted trees as
the user's own). The run ends `--after-promotion` seconds after a promotion, or `--limit`
seconds after the drift.

What is read back is the stack's own: the trigger's log line and
`flywheel_error_changes_detected_total` when it detects, the retrain request's evidence
(`request.change.*` on the retrained version's events), the retrain record, the version's
events, and the stored feedback. "Rows after the drift" are stored labelled rows whose request
came after the drift point and whose label came by that moment; ADWIN (river, the trigger's
`change_delta`) reads the live version's stored errors in label order, as the trigger does.

    .venv/bin/python benchmarks/bench_drift_stack.py [--rate 150] [--stationary 60] [--label-delay 2]
"""
import argparse
import os
import re
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from river.drift import ADWIN

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flywheel.feature_store import FeedbackRecord  # noqa: E402
from flywheel.processors.models import EventLog  # noqa: E402
from flywheel.processors.trigger.detector import error, in_label_order  # noqa: E402
from flywheel.processors.trigger.settings import TriggerSettings  # noqa: E402
from flywheel.streams.labels import LabelPublisher  # noqa: E402
from flywheel.streams.publisher import Publisher, Request  # noqa: E402

from benchmarks.bench_drift import TRAIN_ROWS, agrawal, gbt  # noqa: E402
from benchmarks.stack import await_stack, stack_env, start_stack, stop_stack  # noqa: E402
from flywheel.config import Config, load_config  # noqa: E402
from flywheel.own_model import register_own_model  # noqa: E402
from flywheel.views.gather import live_kafka  # noqa: E402
from flywheel.views.scrape import scrape  # noqa: E402
from flywheel.views.stackfile import read_stack  # noqa: E402
from flywheel.wiring import feature_store_for, schema_registry  # noqa: E402

MODEL = "agrawal"
TICK_S = 0.05
WARM_UP_S = 180.0       # the longest wait for the loop to flow before the stationary part counts
# Rules that fire without any drift (10,000 labels come in a minute at 150/s); the trainer: boosted
# trees, as the user's own model.
SETTINGS = {"FLYWHEEL_TRIGGER_NEW_LABELS": "0", "FLYWHEEL_TRIGGER_MAX_AGE_SECONDS": "0",
            "FLYWHEEL_RETRAINER_TRAINER": "reference:gbt"}
DETECTED = re.compile(r"^(\S+ \S+) \S+ INFO error of (\S+) (\S+) rose")


@dataclass
class Traffic:
    """The old concept's rows, then the new one's from the drift on; what was sent, and when
    (event time, ms)."""
    before: tuple[np.ndarray, np.ndarray]
    after: tuple[np.ndarray, np.ndarray]
    names: list[str]
    sent_ms: list[int] = field(default_factory=list)
    truth: list[str] = field(default_factory=list)
    drift_at: int | None = None         # index of the first record of the new concept

    def features(self, i: int) -> dict[str, float]:
        x = self.before[0][i] if self.drift_at is None else self.after[0][i - self.drift_at]
        y = self.before[1][i] if self.drift_at is None else self.after[1][i - self.drift_at]
        self.truth.append(str(y))
        return dict(zip(self.names, map(float, x)))

    @property
    def drift_ms(self) -> int | None:
        return None if self.drift_at is None or len(self.sent_ms) <= self.drift_at else self.sent_ms[self.drift_at]


def register(config: Config, x: np.ndarray, y: np.ndarray, names: list[str]) -> float:
    """The user's first version, as bench_drift trains it; returns its accuracy on the sample."""
    cut = int(TRAIN_ROWS * 0.8)
    model = gbt(x[:cut], y[:cut])
    columns = {n: x[cut:TRAIN_ROWS, k].tolist() for k, n in enumerate(names)}
    imported = register_own_model(MODEL, "v1", sample={**columns, "class": y[cut:TRAIN_ROWS].tolist()},
                                  estimator=model, target="class",
                                  reference={n: x[:cut, k].tolist() for k, n in enumerate(names)}, config=config)
    return float(imported.manifest.training_metrics.get("sample_accuracy", float("nan")))


def send(config: Config, traffic: Traffic, rate: float, label_delay: float, tick) -> None:
    """Requests at `rate`, each one's label `label_delay` s later; every second `tick()` says
    whether to go on."""
    registry = schema_registry(config)
    requests, labels = Publisher(config.kafka, registry, MODEL), LabelPublisher(config.kafka, registry, "bench")
    pending: deque[tuple[float, int]] = deque()            # (label due, record)
    start, sent, flushed = time.monotonic(), 0, time.monotonic()
    while True:
        now = time.monotonic()
        due = int((now - start) * rate)
        for i in range(sent, due):
            at = int(time.time() * 1000)
            traffic.sent_ms.append(at)
            requests.publish(Request(traffic.features(i), request_id=f"r{i}", event_time=at))
            pending.append((now + label_delay, i))
        sent = max(sent, due)
        while pending and pending[0][0] <= now:
            i = pending.popleft()[1]
            # Labelled when due, not when this loop got round to it: on a busy machine it sends late,
            # in bursts, and "rows labelled by then" would count a burst as one moment.
            labels.label(f"r{i}", label=traffic.truth[i], model=MODEL,
                         labelled_at=traffic.sent_ms[i] + int(label_delay * 1000))
        if now - flushed >= 1.0:
            requests.flush()
            labels.flush()
            flushed = now
            if not tick(sent):
                break
        time.sleep(TICK_S)
    requests.flush()
    labels.flush()


def flowing(config: Config, data_dir: Path) -> bool:
    """Every process answers its metrics endpoint and the loop has stored a joined label."""
    state = read_stack(data_dir)
    if state is None or scrape(state.processes).down:
        return False
    with feature_store_for(config) as store:
        return next(iter(store.feedback(MODEL, 0, 2**62)), None) is not None


def promoted_since(data_dir: Path, drift_ms: int | None) -> int | None:
    if drift_ms is None:
        return None
    return next((e["at"] for e in EventLog(data_dir).events(MODEL)
                 if e["kind"] == "PROMOTED" and e["at"] > drift_ms), None)


def detections(data_dir: Path) -> list[int]:
    """When the trigger logged a detected change (ms), from its log lines."""
    out = []
    for log in sorted(data_dir.glob("trigger*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if (m := DETECTED.match(line)) and m.group(2) == MODEL:
                out.append(int(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000))
    return sorted(out)


def adwin_at(records: list[FeedbackRecord], drift_ms: int, delta: float) -> tuple[int | None, int]:
    """river's ADWIN over the version's errors in label order: the labelled_at of its first
    detection after the drift point, and how often it fired before."""
    detector, false = ADWIN(delta=delta), 0
    for r in records:
        detector.update(error(r))
        if detector.drift_detected:
            if r.labelled_at < drift_ms:
                false += 1
            else:
                return r.labelled_at, false
    return None, false


def rows_after(records: list[FeedbackRecord], drift_ms: int, by_ms: int | None) -> int | None:
    """Labelled rows whose request came after the drift point and whose label came by `by_ms`."""
    if by_ms is None:
        return None
    return sum(1 for r in records if r.event_time >= drift_ms and r.labelled_at <= by_ms)


def accuracy(records: list[FeedbackRecord]) -> float:
    return float(np.mean([r.true_label == r.predicted_label for r in records])) if records else float("nan")


def report(config: Config, data_dir: Path, traffic: Traffic, args, sample_accuracy: float, load: tuple) -> None:
    events = EventLog(data_dir).events(MODEL)
    drift_ms = traffic.drift_ms
    with feature_store_for(config) as store:
        feedback = [f for f in store.feedback(MODEL, 0, 2**62) if f.true_label is not None]
        retrains = sorted(store.retrains(MODEL), key=lambda r: r.requested_at)
    v1 = in_label_order([f for f in feedback if f.model_version == "v1"])
    adwin_ms, adwin_false = adwin_at(v1, drift_ms, config.section(TriggerSettings, "trigger").change_delta)
    announced = [t for t in detections(data_dir) if t >= drift_ms]
    false_announced = [t for t in detections(data_dir) if t < drift_ms]
    request = next((r for r in retrains if r.requested_at >= drift_ms), None)
    asked = next((e for e in events if e.get("evidence", {}).get("request.change.detected_at")), None)
    evidence = asked["evidence"] if asked else {}
    detected_ms = int(evidence["request.change.detected_at"]) if evidence else None
    promoted = next((e for e in events if e["kind"] == "PROMOTED" and e["at"] > drift_ms), None)
    canary = next((e for e in events if e["kind"] == "CANARY" and e["at"] > drift_ms), None)
    after = [f for f in feedback if promoted and f.model_version == promoted["live_version"]
             and f.event_time > promoted["at"]]
    adwin_rows = rows_after(v1, drift_ms, adwin_ms)
    stack_rows = rows_after(v1, drift_ms, detected_ms)
    announced_rows = rows_after(v1, drift_ms, announced[0] if announced else None)

    def s(ms):
        return "—" if ms is None else f"{(ms - drift_ms) / 1000:.1f} s"

    def n(rows):
        return "—" if rows is None else f"{rows:,}"

    print(f"\n{MODEL}: Agrawal 0 → 2 (abrupt), {args.rate:g} requests/s, labels {args.label_delay:g} s late, "
          f"{args.stationary:g} s before the drift; {os.cpu_count()} cores (shared), load average "
          f"{' '.join(f'{v:.2f}' for v in load)} at start, {' '.join(f'{v:.2f}' for v in os.getloadavg())} at end; "
          f"data dir {data_dir}\n")
    print("| | after the drift | labelled rows after the drift |\n|---|---:|---:|")
    print(f"| river ADWIN on the stored error stream | {s(adwin_ms)} | {n(adwin_rows)} |")
    print(f"| the trigger's detector fired (`change.detected_at`) | {s(detected_ms)} | {n(stack_rows)} |")
    print(f"| the stack announced it (log line, `flywheel_error_changes_detected_total`) "
          f"| {s(announced[0] if announced else None)} | {n(announced_rows)} |")
    print(f"| retrain requested ({', '.join(request.reasons) if request else '—'}) "
          f"| {s(request.requested_at if request else None)} "
          f"| {n(rows_after(v1, drift_ms, request.requested_at if request else None))} "
          f"(`change.labels` {n(int(evidence['request.change.labels']) if evidence else None)}) |")
    print(f"| canary {canary['canary_version'] if canary else ''} | {s(canary['at'] if canary else None)} | |")
    print(f"| promoted {promoted['live_version'] if promoted else ''} | {s(promoted['at'] if promoted else None)} | |")

    def ratio(rows):
        return f"{rows / adwin_rows:.2f}" if rows is not None and adwin_rows else "—"

    print(f"\nlabelled rows over ADWIN's: detector {ratio(stack_rows)}, announced {ratio(announced_rows)}; "
          f"false detections before the drift: stack "
          f"{len(false_announced)}, ADWIN {adwin_false}; retrains requested before the drift: "
          f"{sum(r.requested_at < drift_ms for r in retrains)}")
    before = [f for f in v1 if f.event_time < drift_ms]
    during = [f for f in v1 if f.event_time >= drift_ms]
    print(f"accuracy: sample {sample_accuracy:.3f}, live before the drift {accuracy(before):.3f} "
          f"({len(before):,} rows), v1 after it {accuracy(during):.3f} ({len(during):,}), "
          f"after the promotion {accuracy(after):.3f} ({len(after):,})")
    if evidence:
        print(f"request evidence: error {evidence['request.change.error_before']:.3f} → "
              f"{evidence['request.change.error_after']:.3f}, change dated {s(int(evidence['request.change.since']))}")


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=150.0, help="requests per second (default 150)")
    ap.add_argument("--stationary", type=float, default=60.0, metavar="SECONDS", help="before the drift (default 60)")
    ap.add_argument("--label-delay", type=float, default=2.0, metavar="SECONDS", help="label lateness (default 2)")
    ap.add_argument("--after-promotion", type=float, default=30.0, metavar="SECONDS",
                    help="traffic after a promotion, for its accuracy (default 30)")
    ap.add_argument("--limit", type=float, default=300.0, metavar="SECONDS",
                    help="longest run after the drift without a promotion (default 300)")
    return ap.parse_args()


def main() -> int:
    args = arguments()
    most_before = int(args.rate * (args.stationary + WARM_UP_S))
    x, y, names = agrawal(TRAIN_ROWS + most_before + int(args.rate * (args.limit + args.after_promotion + 10)),
                          TRAIN_ROWS + most_before, 0, seed=1)
    data_dir = Path(tempfile.mkdtemp(prefix="flywheel-bench-drift-"))
    env = stack_env(data_dir, uuid.uuid4().hex[:8], SETTINGS)
    config = load_config(env=env)
    load = os.getloadavg()
    print(f"data dir {data_dir}", file=sys.stderr)
    up = start_stack(env, data_dir, MODEL)
    try:
        config = replace(config, kafka=live_kafka(config, await_stack(up, data_dir)))
        sample_accuracy = register(config, x, y, names)
        traffic = Traffic((x[TRAIN_ROWS:TRAIN_ROWS + most_before], y[TRAIN_ROWS:TRAIN_ROWS + most_before]),
                          (x[TRAIN_ROWS + most_before:], y[TRAIN_ROWS + most_before:]), names)
        print(f"registered {MODEL} v1 (sample accuracy {sample_accuracy:.3f}); sending", file=sys.stderr)
        started = time.monotonic()
        flowing_since = None

        def tick(sent: int) -> bool:
            """Drift `--stationary` s after the loop is seen flowing; stop after the promotion."""
            nonlocal flowing_since
            now = time.monotonic()
            if flowing_since is None and (flowing(config, data_dir) or now - started > WARM_UP_S):
                flowing_since = now
                print(f"flowing after {now - started:.0f} s", file=sys.stderr)
            if traffic.drift_at is None and flowing_since is not None and now - flowing_since >= args.stationary:
                traffic.drift_at = sent
                print("drift", file=sys.stderr)
            drift, wall = traffic.drift_ms, time.time() * 1000
            promoted = promoted_since(data_dir, drift)
            return not ((promoted is not None and wall > promoted + args.after_promotion * 1000)
                        or (drift is not None and wall > drift + args.limit * 1000)
                        or (traffic.drift_at is not None
                            and sent - traffic.drift_at > len(traffic.after[1]) - 2 * args.rate))

        send(config, traffic, args.rate, args.label_delay, tick)
        time.sleep(args.label_delay + 3)           # the last labels joined and stored
    finally:
        stop_stack(up)
    report(config, data_dir, traffic, args, sample_accuracy, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
