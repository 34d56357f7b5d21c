"""Backtest a model version on historical requests: the candidate predicts in this process
(never on the live prediction topic), through the worker's own decode/validate/matrix path and
ONNX session code, on the requests the feedback store holds for a time range; its answers are
scored against the stored ground truth next to what production (the baseline version) served.

Requests come from the feedback table: each row holds the features the baseline saw, its
answer, and the ground truth. Replayed traffic (flag `replay`) is left out: it is not what
production served to users.
"""
import time
from dataclasses import dataclass, field

from flywheel.feature_store.base import FeatureStore
from flywheel.feature_store.records import FeedbackRecord
from flywheel.processors.backtest import report as r
from flywheel.processors.backtest.history import request_of
from flywheel.processors.models import Deployment, MatrixLayout, ModelRegistry
from flywheel.processors.models.errors import UnknownVersion
from flywheel.processors.worker.features import RequestDecoder
from flywheel.processors.worker.outputs import interpret
from flywheel.processors.worker.sessions import LoadedVersion
from flywheel.schemas import AvroSerde
from flywheel.schemas.registry.base import SchemaRegistry

REPLAY_FLAG = "replay"
NO_SIZE_LIMIT = 1 << 62


@dataclass
class BacktestPlan:
    model: str
    candidate: str
    start: int
    end: int
    baseline: str | None = None           # None: the model's live version
    slice_by: list[str] | None = None     # None: every categorical feature of the candidate
    batch_size: int = 256
    max_requests: int | None = None


@dataclass
class _Side:
    """One version's answers on the requests, aligned with the store rows."""
    answers: dict[int, dict] = field(default_factory=dict)   # row index -> feedback-shaped dict
    failures: dict[int, str] = field(default_factory=dict)   # row index -> reason it could not be served
    seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


class Backtest:
    def __init__(self, store: FeatureStore, models: ModelRegistry, registry: SchemaRegistry):
        self.store, self.models = store, models
        self._requests = AvroSerde(registry, "InferenceRequest")

    def run(self, plan: BacktestPlan, on_progress=None) -> r.BacktestReport:
        deployment = self.models.deployment(plan.model)
        baseline = plan.baseline or deployment.live_version
        if baseline is None:
            raise UnknownVersion(f"model {plan.model} has no live version to compare with: pass a baseline")
        rows, skipped = self._history(plan, baseline)
        candidate = self._load(deployment, plan.candidate)
        produced = self._predict(candidate, rows, plan.batch_size, on_progress)
        rerun = self._predict(self._load(deployment, baseline), rows, plan.batch_size) \
            if baseline in deployment.versions else None
        for reason in produced.failures.values():
            skipped[f"candidate_{reason}"] = skipped.get(f"candidate_{reason}", 0) + 1
        both = sorted(produced.answers)
        base = [rows[i].to_dict() for i in both]
        cand = [produced.answers[i] for i in both]
        kind, base_metrics, cand_metrics = r.score(base, cand)
        metric = r.PRIMARY[kind]
        features = plan.slice_by if plan.slice_by is not None \
            else [f.name for f in candidate.manifest.features.categorical]
        report = r.BacktestReport(
            plan.model, plan.candidate, baseline, plan.start, plan.end, kind, metric, len(both),
            base_metrics, cand_metrics, r.agreement(base, cand),
            r.slices(base, cand, features, metric, by_label=kind == "classifier"), {}, skipped)
        timings = {
            "candidate": r.latency(f"{plan.candidate} in-process ONNX Runtime, batches of {plan.batch_size}",
                                   produced.seconds, produced.sizes),
            "baseline": rerun and r.latency(f"{baseline} in-process ONNX Runtime, batches of {plan.batch_size}",
                                            rerun.seconds, rerun.sizes),
            "production": r.latency(f"{baseline} as served: event time to prediction",
                                    [(rows[i].predicted_at - rows[i].event_time) / 1000 for i in both]),
        }
        report.latency = {k: v for k, v in timings.items() if v is not None}
        return report

    def _history(self, plan: BacktestPlan, baseline: str) -> tuple[list[FeedbackRecord], dict[str, int]]:
        rows: list[FeedbackRecord] = []
        skipped: dict[str, int] = {}
        for record in self.store.feedback(plan.model, plan.start, plan.end, version=baseline):
            reason = ("replayed" if REPLAY_FLAG in record.flags else
                      "no_ground_truth" if record.true_label is None and record.true_value is None else None)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            rows.append(record)
            if plan.max_requests is not None and len(rows) >= plan.max_requests:
                break
        return rows, skipped

    def _load(self, deployment: Deployment, version: str) -> LoadedVersion:
        ref = deployment.versions.get(version)
        if ref is None:
            raise UnknownVersion(f"{deployment.model} has no version {version!r} "
                                 f"(registered: {', '.join(sorted(deployment.versions)) or 'none'})")
        manifest, data = self.models.store.load(deployment.model, version, ref.sha256)  # sha256-verified
        return LoadedVersion(manifest, data)

    def _predict(self, version: LoadedVersion, rows: list[FeedbackRecord], batch_size: int,
                 on_progress=None) -> _Side:
        layout = MatrixLayout(version.manifest.features, version.manifest.categorical_encoding)
        decoder = RequestDecoder(self._requests, layout, NO_SIZE_LIMIT)
        side = _Side()
        for first in range(0, len(rows), batch_size):
            chunk = rows[first:first + batch_size]
            batch = decoder.decode(self._requests.encode_many([request_of(row) for row in chunk]))
            for failure in batch.failures:
                side.failures[first + failure.index] = failure.reason
            if batch.indices:
                started = time.perf_counter()
                out = version.run(batch.matrix)
                side.seconds.append(time.perf_counter() - started)
                side.sizes.append(len(batch.indices))
                answers = interpret(version, out)
                for j, index in enumerate(batch.indices):
                    side.answers[first + index] = {
                        **chunk[index].to_dict(), "model_version": version.version,
                        "predicted_label": answers.label(j), "predicted_value": answers.value(j),
                        "scores": answers.scores(j), "confidence": answers.confidence_of(j), "flags": answers.flags[j]}
            if on_progress:
                on_progress(min(first + batch_size, len(rows)), len(rows))
        return side

