"""The retrainer's loop: one RetrainRequested at a time, from the `retrain` topic.

For each request:
1. skip it if the store says it is no longer in flight (a redelivery after it was handled);
2. export the requested feedback (train part + most recent held-out part);
3. train a candidate through the configured trainer;
4. validate candidate against the live version on the held-out part;
5. rejected: a REJECTED ModelEvent with the reason and evidence, record marked done;
   accepted: register the candidate, store its reference profile, deploy it as a canary;
6. only then commit the request's offset (at-least-once; step 1 makes a repeat harmless).
A failure marks the request failed with its reason; the loop goes on with the next one.
"""
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from prometheus_client import Counter

from feature_store import FeatureStore, RetrainRecord, retrying
from schemas.registry.base import SchemaRegistry
from streams.settings import KafkaSettings
from streams.subscriber import Subscriber
from streams.topics import TopicCatalog

from processors.models import ModelRegistry
from processors.retrainer import dataset as datasets
from processors.retrainer.reference import store_reference
from processors.retrainer.trainers import make_trainer
from processors.retrainer.validate import compare
from processors.runtime import ProcessorMetrics

log = logging.getLogger("flywheel.retrainer")


@dataclass
class RetrainerSettings:
    """TOML [retrainer], env FLYWHEEL_RETRAINER_<FIELD>."""
    trainer: str = "reference:mlp"       # reference:mlp|gbt, python:module:function, command:...
    min_improvement: float = 0.01        # primary metric gain the candidate must show
    canary_share: float = 0.2
    group_id: str = "flywheel-retrainer"


class RetrainerMetrics(ProcessorMetrics):
    def __post_init__(self):
        super().__post_init__()
        self.outcomes = Counter("flywheel_retrain_outcomes", "Retrain requests by outcome",
                                ["model", "outcome"], registry=self.registry)


class Retrainer:
    def __init__(self, kafka: KafkaSettings, schemas: SchemaRegistry, store: FeatureStore,
                 models: ModelRegistry, settings: RetrainerSettings, metrics: RetrainerMetrics | None = None,
                 stop: threading.Event | None = None, progress=None):
        self.store, self.models, self.settings = store, models, settings
        self.metrics = metrics or RetrainerMetrics()
        self.stop = stop or threading.Event()
        self.progress = progress
        self._requests = Subscriber(kafka, schemas, TopicCatalog(kafka).retrain, "RetrainRequested",
                                    start="earliest", group_id=settings.group_id)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = self._requests.poll_batch(1, 0.5)
                for received in batch:
                    if isinstance(received.value, dict):
                        self.handle(received.value)
                if batch:
                    self._requests.commit()
        finally:
            self._requests.close()

    def handle(self, request: dict) -> str:
        """Carry out one request; return its outcome (accepted, rejected, failed, skipped)."""
        model, retrain_id = request["model"], request["retrain_id"]
        record = self._read(lambda: self.store.get_retrain(model, retrain_id)) or RetrainRecord(
            model, retrain_id, "in_flight", request["requested_at"], request["requested_at"],
            base_version=request.get("base_version"), reasons=list(request["reasons"]))
        if record.status != "in_flight":
            return "skipped"
        try:
            outcome, version, detail = self._retrain(request)
            record = replace(record, status="done", new_version=version, detail=detail)
        except Exception as e:  # any failure is this request's, recorded; the loop lives on
            log.exception("retrain %s of %s failed", retrain_id, model)
            outcome, record = "failed", replace(record, status="failed", detail=f"{type(e).__name__}: {e}")
        record = replace(record, updated_at=int(time.time() * 1000))
        self._read(lambda: self.store.put_retrain(record))
        self.metrics.outcomes.labels(model, outcome).inc()
        log.info("retrain %s of %s: %s (%s)", retrain_id, model, outcome, record.detail)
        return outcome

    def _retrain(self, request: dict) -> tuple[str, str | None, str]:
        model = request["model"]
        deployment = self.models.deployment(model)
        ref = deployment.versions[deployment.live_version]
        incumbent, incumbent_onnx = self.models.store.load(model, deployment.live_version, ref.sha256)
        spec = request["dataset"]
        training = datasets.export(self.store, model, incumbent.features, spec["start_time"], spec["end_time"],
                                   spec["holdout_share"], spec["hard_example_share"],
                                   incumbent.output.low_confidence, self.progress)
        version = f"v{time.strftime('%Y%m%d%H%M%S')}-{request['retrain_id'][:6]}"
        with tempfile.TemporaryDirectory(prefix="flywheel-train-") as work:
            path = datasets.save(training.train, Path(work) / "dataset.npz")
            candidate = make_trainer(self.settings.trainer).train(path, Path(work), incumbent)
        manifest = replace(incumbent, version=version, output=candidate.output, sha256="",
                           training_metrics={**candidate.metrics, "rows": float(len(training.train)),
                                             "hard_examples": float(training.hard_examples)},
                           reference_profile=None, stage="registered", created_at=int(time.time() * 1000),
                           description=f"retrained for {', '.join(request['reasons'])} ({request['retrain_id']})")
        result = compare(manifest, candidate.onnx_bytes, incumbent, incumbent_onnx, training.holdout,
                         self.settings.min_improvement)
        if not result.accepted:
            self.models.reject(model, version, result.reason, result.evidence)
            return "rejected", None, result.reason
        self.models.register(candidate.onnx_bytes, manifest, result.reason, result.evidence)
        store_reference(self.store, manifest, candidate.onnx_bytes, training.train)
        self.models.canary(model, version, self.settings.canary_share, result.reason, result.evidence)
        return "accepted", version, result.reason

    def _read(self, call):
        return retrying(call, stop=self.stop)
