"""The retrainer's loop: one RetrainRequested at a time, from the `retrain` topic.

For each request:
1. skip it if the store says it is no longer in flight (a redelivery after it was handled);
2. its version name comes from the request (time requested + retrain id), so a request yields at
   most one version: if the registry already has it (the retrainer died after registering, or
   the request was redelivered), go straight to deploying it, never train again;
3. export the requested feedback (train part + most recent held-out part);
4. train a candidate through the configured trainer;
5. validate candidate against the live version on the held-out part;
6. rejected (worse, too few rows, a canary still undecided): a REJECTED ModelEvent with the
   reason and evidence, record done; accepted: store its reference profile, register it, deploy
   it as a canary; the record stays in flight until the rollout decides the canary (the trigger
   closes it then), so no retrain is requested for a candidate still being judged;
7. only then commit the request's offset (at-least-once; steps 1 and 2 make a repeat harmless).
A request that cannot be decoded becomes a dead letter. A failure marks the request failed with
its reason; the loop goes on with the next one.
"""
import logging
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from flywheel.feature_store import FeatureStore, RetrainRecord, retrying
from flywheel.processors.models import Deployment, ModelRegistry
from flywheel.processors.models.manifest import Lineage
from flywheel.processors.retrainer import dataset as datasets
from flywheel.processors.retrainer.reference import store_reference
from flywheel.processors.retrainer.settings import RetrainerSettings
from flywheel.processors.retrainer.trainer_spec import code_sha256
from flywheel.processors.retrainer.trainers import make_trainer
from flywheel.processors.retrainer.validate import compare, outputs
from flywheel.processors.runtime import DeadLetterWriter, ProcessorMetrics
from flywheel.processors.training import review_line
from flywheel.schemas import AvroSerde, DecodeFailure
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.schemas.setting import for_model
from flywheel.streams.clients import make_producer
from flywheel.streams.delivery import TrackedProducer
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.subscriber import Received, Subscriber
from flywheel.streams.topics import TopicCatalog
from prometheus_client import Counter

PROCESSOR = "retrainer"
log = logging.getLogger("flywheel.retrainer")


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
        catalog = TopicCatalog(kafka)
        self._requests = Subscriber(kafka, schemas, catalog.retrain, "RetrainRequested",
                                    start="earliest", group_id=settings.group_id)
        self._out = TrackedProducer(make_producer(kafka))
        self._dead = DeadLetterWriter(AvroSerde(schemas, "DeadLetter"), catalog.deadletter, PROCESSOR,
                                      self.metrics.dead_letters)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = self._requests.poll_batch(1, 0.5)
                for received in batch:
                    if isinstance(received.value, DecodeFailure):
                        self.dead_letter(received)
                    else:
                        self.handle(received.value)
                if batch:
                    self._out.flush()            # the dead letter is written before the offset moves past it
                    self._requests.commit()
        finally:
            self._requests.close()

    def dead_letter(self, received: Received) -> None:
        failure = received.value
        self._dead.send(self._out, self._dead.record(
            failure.reason, failure.detail, topic=received.topic, partition=received.partition,
            offset=received.offset, key=received.key, value=received.raw, headers=list(received.headers),
            timestamp=received.timestamp))
        model = (received.key or b"").decode(errors="replace")
        self.metrics.outcomes.labels(model, "invalid").inc()
        log.warning("retrain request at %s[%d]@%d is not decodable (%s): dead-lettered", received.topic,
                    received.partition, received.offset, failure.reason)

    def handle(self, request: dict) -> str:
        """Carry out one request; return its outcome (accepted, resumed, rejected, failed, skipped)."""
        model, retrain_id = request["model"], request["retrain_id"]
        record = self._read(lambda: self.store.get_retrain(model, retrain_id)) or RetrainRecord(
            model, retrain_id, "in_flight", request["requested_at"], request["requested_at"],
            base_version=request.get("base_version"), reasons=list(request["reasons"]))
        if record.status != "in_flight":
            return "skipped"
        try:
            outcome, version, detail = self._retrain(request)
            # A candidate on canary keeps the request in flight until the rollout decides it.
            status = "done" if version is None else "in_flight"
            record = replace(record, status=status, new_version=version, detail=detail)
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
        version = version_for(request)
        deployment = self.models.deployment(model)
        if version in deployment.versions:
            return "resumed", self._deploy(deployment, version), f"{version} was registered before; not trained again"
        if deployment.canary_version:
            return self._reject(model, version, f"canary {deployment.canary_version} is still undecided")
        ref = deployment.versions[deployment.live_version]
        incumbent, incumbent_onnx = self.models.store.load(model, deployment.live_version, ref.sha256)
        spec = request["dataset"]
        try:
            training = datasets.export(self.store, model, incumbent.features, spec["start_time"], spec["end_time"],
                                       spec["holdout_share"], spec["hard_example_share"],
                                       incumbent.output.low_confidence, self.progress)
        except datasets.EmptyDataset as e:
            return self._reject(model, version, str(e))
        with tempfile.TemporaryDirectory(prefix="flywheel-train-") as work:
            path = datasets.save(training.train, Path(work) / "dataset.npz")
            candidate = make_trainer(for_model(self.settings, model).trainer).train(path, Path(work), incumbent)
        manifest = replace(incumbent, version=version, output=candidate.output, sha256="",
                           training_metrics={**candidate.metrics, "rows": float(len(training.train)),
                                             "hard_examples": float(training.hard_examples)},
                           reference_profile=None, stage="registered", created_at=int(time.time() * 1000),
                           description=f"retrained for {', '.join(request['reasons'])} ({request['retrain_id']})",
                           lineage=lineage(request, deployment.live_version, for_model(self.settings, model).trainer,
                                           training))
        result = compare(manifest, candidate.onnx_bytes, incumbent, incumbent_onnx, training.holdout,
                         self.settings.min_improvement)
        # The rules that asked and their evidence travel with the decision (request.<key>, see the docs).
        evidence = {**result.evidence, **{f"request.{k}": v for k, v in request.get("metrics", {}).items()}}
        reason = f"asked for {', '.join(request['reasons'])}: {result.reason}"
        if not result.accepted:
            return self._reject(model, version, reason, evidence)
        if manifest.output.task == "classifier":     # review starts at what is rare for this version
            line = review_line(outputs(manifest, candidate.onnx_bytes, training.holdout).max(axis=1))
            manifest = replace(manifest, output=replace(manifest.output, low_confidence=line))
        # The profile first: a version is never registered without one (stored again if redone).
        store_reference(self.store, manifest, candidate.onnx_bytes, training.reference, training.holdout)
        self.models.register(candidate.onnx_bytes, manifest, reason, evidence)
        self.models.canary(model, version, self.settings.canary_share, reason, evidence)
        return "accepted", version, reason

    def _reject(self, model: str, version: str, reason: str, evidence=None) -> tuple[str, None, str]:
        self.models.reject(model, version, reason, evidence)
        return "rejected", None, reason

    def _deploy(self, deployment: Deployment, version: str) -> str:
        """Finish what a retrainer that died after registering `version` left: its canary,
        unless it has been deployed already (it may have been decided since)."""
        deployed = any(e["kind"] == "CANARY" and e["version"] == version
                       for e in self.models.history.events(deployment.model))
        if not deployed and version not in (deployment.canary_version, deployment.live_version):
            self.models.canary(deployment.model, version, self.settings.canary_share,
                               "registered before the retrainer restarted")
        return version

    def _read(self, call):
        return retrying(call, stop=self.stop)


def lineage(request: dict, parent: str | None, trainer: str, training: datasets.TrainingSet) -> Lineage:
    return Lineage(parent=parent, retrain_id=request["retrain_id"], reasons=tuple(request["reasons"]),
                   trainer=trainer, trainer_sha256=code_sha256(trainer),
                   data_start=training.time_range[0], data_end=training.time_range[1],
                   train_rows=training.train_rows, holdout_rows=len(training.holdout),
                   hard_examples=training.hard_examples, holdout_share=request["dataset"]["holdout_share"],
                   hard_example_share=request["dataset"]["hard_example_share"],
                   dataset_sha256=training.content_sha256)


def version_for(request: dict) -> str:
    """The one version name a request can yield: when it was asked for, and by which request."""
    asked = time.strftime("%Y%m%d%H%M%S", time.gmtime(request["requested_at"] / 1000))
    return f"v{asked}-{request['retrain_id'][:8]}"
