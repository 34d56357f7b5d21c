"""The inference worker: many models in one process, one consumer subscribed to every served
model's request topic, batches split by topic, one ONNX Runtime call per model version.

Per batch (see processors/runtime/commit.py for the commit protocol, pipeline.py for the overlap):
  1. apply ModelEvents that arrived (hot swap between batches: the batch in flight finishes with
     the versions it started with, the next one uses the new ones, nothing lost or repeated);
  2. consume up to `max_batch` records (whatever is waiting; optionally wait `max_wait_ms` more);
  3. per model: size check, decode (the whole batch as numpy columns where the layout allows),
     validate, build one float32 matrix; failures become dead letters with the original bytes
     and headers;
  4. route rows: canary share by crc32(entity id), live for the rest, shadows on every row;
  5. encode Predictions (live, canary) for `<model>.predictions`, shadow ones for
     `<model>.shadow`, flagged ones also for `review`, into an outbox; request headers (e.g.
     flywheel-replay) travel onto the prediction;
  6. wait for the previous batch's commit, which ran meanwhile on the commit thread (if it
     failed, it and this batch are rewound and redone);
  7. produce the outbox and start committing outputs and input offsets together (exactly-once)
     or flush then commit (at-least-once), on the commit thread.
"""
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from threading import Event

import numpy as np
from confluent_kafka import Message
from flywheel.feature_store.online import OnlineFeatureLookup
from flywheel.processors.models import ArtifactStore, Deployment, EventLog, ModelFollower, ModelRegistryError
from flywheel.processors.models.refusals import Refusal, RefusalLog, reason_of
from flywheel.processors.runtime import CommitError
from flywheel.processors.runtime.budget import DOWNSTREAM_HEADROOM, RECORD_OVERHEAD, Budget
from flywheel.processors.runtime.pipeline import CommitPipeline, Outbox
from flywheel.processors.runtime.processor import Endpoint, StreamProcessor
from flywheel.processors.worker.features import FeatureBatch, RequestDecoder
from flywheel.processors.worker.metrics import WorkerMetrics
from flywheel.processors.worker.outputs import Answers, ReviewBudget, interpret
from flywheel.processors.worker.sessions import (
    ROLE_CANARY,
    ROLE_LIVE,
    ROLE_SHADOW,
    LoadedVersion,
    ModelLoader,
    ServedModel,
)
from flywheel.processors.worker.settings import WorkerSettings
from flywheel.processors.worker.wire import PredictionWriter, ReviewWriter
from flywheel.schemas import AvroSerde
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.schemas.setting import for_model
from flywheel.schemas.wire.primitives import read_map
from flywheel.streams.clients import LOW_LATENCY_FETCH
from flywheel.streams.generations import logical_name
from flywheel.streams.settings import KafkaSettings

from flywheel.errors import Unavailable

PROCESSOR = "worker"
log = logging.getLogger("flywheel.worker")

# The transactional producer holds records until commit (linger far above a batch's life):
# on a broker that shows aborted records to read_committed readers (Tansu 0.6), records that
# never left the client before a crash cannot reappear.
EXACTLY_ONCE_PRODUCER = {"linger.ms": 1000, "batch.size": 16_000_000}


@dataclass
class _Batch:
    """What one transaction will carry: its input records, their outputs, their event times."""

    messages: list[Message] = field(default_factory=list)
    outbox: Outbox = field(default_factory=Outbox)
    event_times: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))


class InferenceWorker(StreamProcessor):
    name = PROCESSOR

    def __init__(self, settings: WorkerSettings, kafka: KafkaSettings, registry: SchemaRegistry, data_dir: Path,
                 metrics: WorkerMetrics | None = None, stop: Event | None = None,
                 online: dict[str, OnlineFeatureLookup] | None = None, endpoint: Endpoint | None = None):
        eo = settings.exactly_once
        super().__init__(kafka, registry, metrics or WorkerMetrics(), settings.group_id,
                         transactional_id=f"{settings.group_id}-{settings.instance_id}" if eo else None,
                         commit_timeout_s=settings.commit_timeout_s, consumer_config=LOW_LATENCY_FETCH,  # latency path
                         producer_config=EXACTLY_ONCE_PRODUCER if eo else None, stop=stop, endpoint=endpoint)
        self.s = settings
        self.online = online or {}   # model -> lookup: enrich its requests by entity id
        self.loader = ModelLoader(ArtifactStore(data_dir), settings.intra_op_threads, settings.cache_size)
        self.refusals = RefusalLog(data_dir)
        self.history = EventLog(data_dir)
        self.follower = ModelFollower(kafka, registry, self._refuse)
        self.requests = AvroSerde(registry, "InferenceRequest")
        self.predictions = AvroSerde(registry, "Prediction")
        self.reviews = AvroSerde(registry, "ReviewItem")
        self.review_writer = ReviewWriter(self.reviews)
        self.budget = Budget(kafka.max_message_bytes)
        self.pipeline = CommitPipeline(self.committer)
        self.served: dict[str, ServedModel] = {}
        self.decoders: dict[str, RequestDecoder] = {}
        self._writers: dict[tuple[str, str, str], PredictionWriter] = {}
        self._review_budgets: dict[str, ReviewBudget] = {}
        self.load_errors: dict[str, str] = {}
        self._by_topic: dict[str, str] = {}
        self._subscribed: tuple[str, ...] = ()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "InferenceWorker":
        self.committer.start()      # first: a killed predecessor is fenced before the models load
        self.follower.catch_up()
        self._apply(list(self.follower.events.values()))
        super().start()
        return self

    def output_topics(self) -> list[str]:
        c = self.catalog
        return [c.review, c.deadletter] + [t for m in sorted(self.served) for t in (c.predictions(m), c.shadow(m))]

    def close(self) -> None:
        self._settle()              # the batch in flight commits (or is rewound)
        self.pipeline.close()
        super().close()
        self.follower.close()

    # -- one batch -------------------------------------------------------------------------------

    def step(self) -> int:
        events = self.follower.poll(0)
        if events:
            self._settle()        # the batch in flight finishes with the versions it started with
            self._apply(events)
        batch = _Batch()
        try:
            self._take(self._consume(), batch)
            if not batch.messages:
                self._settle()
                return 0
            if not self._settle(batch.messages):
                return 0
            # Records that arrived while the previous commit ran join this batch rather than
            # waiting for the next one's commit.
            room = self.s.max_batch - len(batch.messages)
            if room > 0 and self._subscribed:
                self._take(self.consumer.consume(room, 0), batch)
        except Unavailable:
            # Backpressure, not loss (runtime/failures.py, rule 2): the online store or the schema
            # registry did not answer; the batch is rewound and redone after a backoff.
            if self._settle(batch.messages):
                self.committer.rewind(batch.messages)
            raise
        try:
            self.pipeline.commit(batch.messages, batch.outbox, batch.event_times)
        except BaseException:
            self.pipeline.abort(batch.messages)
            raise
        return len(batch.messages)

    def _take(self, messages: list[Message], batch: "_Batch") -> None:
        """Compute the outputs of `messages` into `batch`, model by model. Records of a model
        dropped from service since they were fetched are left uncommitted for whoever serves
        that model next."""
        by_topic: dict[str, list[Message]] = defaultdict(list)
        for m in messages:
            if m.error() is not None:
                log.warning("consumer error: %s", m.error())
            else:
                by_topic[m.topic()].append(m)
        for topic, records in by_topic.items():
            model = self._by_topic.get(logical_name(topic))
            if model is not None:
                batch.messages += records   # first: an unavailable store or registry below rewinds them too
                batch.event_times[model].append(self._serve(self.served[model], records, batch.outbox))

    def _settle(self, holding: list[Message] = ()) -> bool:
        """Wait for the batch in flight; False if it failed (it and `holding` are rewound)."""
        try:
            settled = self.pipeline.settle(holding)
        except CommitError as e:
            log.warning("%s", e)
            return False
        if settled is not None:
            done_ms = settled.finished_at * 1000
            for model, event_times in settled.tag.items():
                self.metrics.e2e_latency.observe_many((model,), (done_ms - np.concatenate(event_times)) / 1000.0)
        return True

    def _consume(self) -> list[Message]:
        if not self._subscribed:
            self.stop.wait(self.s.idle_poll_ms / 1000)
            return []
        c = self.consumer
        messages = c.consume(self.s.max_batch, 0)
        if not messages:
            messages = c.consume(1, self.s.idle_poll_ms / 1000)
            if not messages:
                return []
            messages += c.consume(self.s.max_batch - 1, 0)
        if self.s.max_wait_ms > 0 and len(messages) < self.s.max_batch:
            messages += c.consume(self.s.max_batch - len(messages), self.s.max_wait_ms / 1000)
        return messages

    def _serve(self, served: ServedModel, messages: list[Message], outbox: Outbox) -> np.ndarray:
        model = served.name
        m = self.metrics
        m.records_in.labels(PROCESSOR, model).inc(len(messages))
        m.batch_size.observe((model,), len(messages))
        batch = self.decoders[model].decode([msg.value() for msg in messages])
        for failure in batch.failures:
            self.deadletters.send_message(outbox, messages[failure.index], failure.reason, failure.detail)
        if not len(batch):
            return np.empty(0)
        canary = served.canary_mask(batch.entity_ids)
        plan = [(served.live, ROLE_LIVE, np.flatnonzero(~canary))]
        if served.canary is not None:
            plan.append((served.canary, ROLE_CANARY, np.flatnonzero(canary)))
        plan += [(shadow, ROLE_SHADOW, None) for shadow in served.shadows]
        predicted_at = int(time.time() * 1000)
        source = [messages[i] for i in batch.indices]
        refused: set[int] = set()       # rows whose output is over the size budget: dead-lettered once
        for version, role, rows in plan:
            if rows is not None and len(rows) == 0:
                continue
            x = batch.matrix if rows is None else batch.matrix[rows]
            answers, seconds = self._predict(model, version, x)
            picked = list(range(len(batch))) if rows is None else rows.tolist()
            self._produce(outbox, served, version, role, answers, picked, batch, source, predicted_at,
                          int(seconds * 1e6), refused)
        return np.asarray(batch.event_times, dtype=np.float64)

    def _predict(self, model: str, version: LoadedVersion, x: np.ndarray) -> tuple[Answers, float]:
        started = time.perf_counter()
        if version.cache_size:
            out, hits = version.run_cached(x)
            self.metrics.cache_lookups.labels(model).inc(len(x))
            self.metrics.cache_hits.labels(model).inc(hits)
        else:
            out = version.run(x)
        seconds = time.perf_counter() - started
        self.metrics.ort_seconds.observe((model, version.version), seconds)
        return interpret(version, out), seconds

    def _writer(self, model: str, version: LoadedVersion, role: str) -> PredictionWriter:
        key = (model, version.version, role)
        writer = self._writers.get(key)
        if writer is None:
            writer = PredictionWriter(self.predictions, model, version.version, role, version.manifest.output.labels)
            if not writer.enabled:
                log.warning("Prediction schema differs from the one the fast encoder knows: using fastavro")
            self._writers[key] = writer
        return writer

    def _produce(self, outbox: Outbox, served: ServedModel, version: LoadedVersion, role: str, answers: Answers,
                 picked: list[int], batch: FeatureBatch, source: list[Message], predicted_at: int,
                 inference_us: int, refused: set[int]) -> None:
        model = served.name
        topic = self.catalog.shadow(model) if role == ROLE_SHADOW else self.catalog.predictions(model)
        writer = self._writer(model, version, role)
        if writer.enabled:
            values = writer.encode_batch(answers, picked, batch, predicted_at, inference_us)
        else:
            values = [self.predictions.encode(self._record(model, version, role, answers, k, batch, j, predicted_at,
                                                           inference_us)) for k, j in enumerate(picked)]
        sources = [source[j] for j in picked]
        # Keyed by request id, like labels: the joiner that owns a request's label partition owns
        # its predictions too, so it is the one writer of that request's label count.
        keys, headers = [batch.request_ids[j].encode() for j in picked], [m.headers() for m in sources]
        fit = self._fitting(outbox, "Prediction", values, keys, headers, picked, sources, refused, DOWNSTREAM_HEADROOM)
        if len(fit) < len(values):
            values, keys, headers = [values[k] for k in fit], [keys[k] for k in fit], [headers[k] for k in fit]
        outbox.produce_many(topic, values, keys, headers)
        fitting = set(fit)
        flagged = [k for k in self._review_selection(model, answers) if k in fitting] if role != ROLE_SHADOW else []
        if flagged:
            reviews = [self._review(model, version, answers, k, batch, picked[k], predicted_at) for k in flagged]
            keys = [batch.request_ids[picked[k]].encode() for k in flagged]
            headers = [sources[k].headers() for k in flagged]
            fit = self._fitting(outbox, "ReviewItem", reviews, keys, headers, [picked[k] for k in flagged],
                                [sources[k] for k in flagged], refused)
            outbox.produce_many(self.catalog.review, [reviews[i] for i in fit], [keys[i] for i in fit],
                                [headers[i] for i in fit])
            for reason, n in Counter(r for i in fit for r in answers.flags[flagged[i]]).items():
                self.metrics.review_items.labels(model, reason).inc(n)
        self.metrics.predictions.labels(model, version.version, role).inc(len(values))

    def _fitting(self, outbox: Outbox, what: str, values: list[bytes], keys: list, headers: list, rows: list[int],
                 sources: list[Message], refused: set[int], headroom: int = 0) -> list[int]:
        """Positions of the outputs within the size budget. The request of each output over it
        becomes an `output_too_large` dead letter (once per request), never a produce error."""
        budget = self.budget
        longest = max(map(len, values), default=0) + max(map(len, filter(None, keys)), default=0)
        if not any(headers) and longest + headroom + RECORD_OVERHEAD <= budget.max_bytes:   # the common case
            return list(range(len(values)))
        fit = []
        for i, (value, key, h) in enumerate(zip(values, keys, headers)):
            excess = budget.excess(value, key, h, headroom)
            if excess <= 0:
                fit.append(i)
            elif rows[i] not in refused:
                refused.add(rows[i])
                self.deadletters.send_message(outbox, sources[i], "output_too_large",
                                              f"its {what} would be {len(value)} bytes, {excess} over the "
                                              f"{budget.max_bytes}-byte limit (kafka.max_message_bytes)")
        return fit

    def _review_selection(self, model: str, answers: Answers) -> list[int]:
        own = for_model(self.s, model)
        budget = self._review_budgets.setdefault(model, ReviewBudget(own.review_share, own.review_burst))
        selection = budget.select(answers)
        for reason, n in selection.dropped.items():
            self.metrics.review_dropped.labels(model, reason).inc(n)
        return selection.items

    @staticmethod
    def _record(model: str, version: LoadedVersion, role: str, answers: Answers, k: int, batch: FeatureBatch,
                j: int, predicted_at: int, inference_us: int) -> dict:
        """One Prediction as a record (for review items and the fastavro path)."""
        return {
            "request_id": batch.request_ids[j], "entity_id": batch.entity_ids[j], "model": model,
            "model_version": version.version, "role": role, "event_time": batch.event_times[j],
            "predicted_at": predicted_at, "label": answers.label(k), "value": answers.value(k),
            "scores": answers.scores(k), "confidence": answers.confidence_of(k), "flags": answers.flags[k],
            "numeric": read_map(batch.numeric_raw[j], strings=False),
            "categorical": read_map(batch.categorical_raw[j], strings=True),
            "feature_sources": batch.sources[j] or {}, "inference_us": inference_us, "batch_size": len(batch),
        }

    def _review(self, model: str, version: LoadedVersion, answers: Answers, k: int, batch: FeatureBatch, j: int,
                predicted_at: int) -> bytes:
        """The encoded ReviewItem of answer k (row j of the batch)."""
        reasons = answers.flags[k]
        fields = (model, version.version, reasons, answers.label(k), answers.value(k), answers.confidence_of(k))
        if self.review_writer.enabled:
            return self.review_writer.encode(batch.ids_raw[j], *fields, batch.numeric_raw[j], batch.categorical_raw[j],
                                             predicted_at)
        return self.reviews.encode(dict(zip(
            ("request_id", "entity_id", "model", "model_version", "reasons", "label", "value", "confidence",
             "numeric", "categorical", "created_at"),
            (batch.request_ids[j], batch.entity_ids[j], *fields, read_map(batch.numeric_raw[j], strings=False),
             read_map(batch.categorical_raw[j], strings=True), predicted_at))))

    # -- model events ----------------------------------------------------------------------------

    def _wanted(self, model: str) -> bool:
        return not self.s.models or model in self.s.models

    def _apply(self, events: list[dict]) -> None:
        latest = {e["model"]: e for e in events if self._wanted(e["model"])}
        for e in events:
            # Label values only for models registered in this worker's store (events are untrusted).
            if self._wanted(e["model"]) and self.loader.store.has_model(e["model"]):
                self.metrics.model_events.labels(e["model"], e["kind"]).inc()
        deployments = self.follower.deployments()
        for model, event in latest.items():
            current = self.served.get(model)
            try:
                served, failed = self.loader.build(deployments[model], current)
            except ModelRegistryError as e:
                fallback = None if current else self._logged(model)
                keeping = "what it served" if current else \
                    "the registry's last logged state" if fallback else "the model unserved"
                self._refuse(Refusal(model, event.get("live_version") or "?", reason_of(e), f"{e} (keeping {keeping})",
                                     event["at"]))
                # After the refusal is counted: whoever sees the error sees its metric too.
                self.load_errors[model] = str(e)
                if fallback is not None:
                    self._swap(model, None, fallback)
                continue
            for version, e in failed.items():
                self._refuse(Refusal(model, version, reason_of(e), f"{e} (serving without it)", event["at"]))
            if failed:
                self.load_errors[model] = "; ".join(str(e) for e in failed.values())
            else:
                self.load_errors.pop(model, None)
            self._swap(model, current, served)
        self._resubscribe()

    def _logged(self, model: str) -> ServedModel | None:
        """At start-up, when the topic's last event for a model is refused: the state the registry
        last logged in the (trusted) data dir, if it loads, so a forged event cannot unserve a
        model by being last on the topic."""
        logged = self.history.last().get(model)
        if logged is None:
            return None
        try:
            return self.loader.build(Deployment.from_event(logged), None)[0]
        except ModelRegistryError:
            return None

    def _refuse(self, refusal: Refusal) -> None:
        """Loud: a log line, a metric, and an entry in the refusal log `flywheel status` shows."""
        refusal = replace(refusal, by=f"{PROCESSOR} {self.s.instance_id}")
        log.error("%s", refusal.describe())
        self.metrics.model_refusals.labels(refusal.reason).inc()
        self.refusals.append(refusal)

    def _swap(self, model: str, current: ServedModel | None, served: ServedModel | None) -> None:
        for version, role in (current.roles() if current else []):
            self.metrics.version_info.remove(model, version, role)
        if served is None:
            self.served.pop(model, None)
            self.decoders.pop(model, None)
            return
        self._writers = {k: w for k, w in self._writers.items() if k[0] != model}
        self.served[model] = served
        self.decoders[model] = RequestDecoder(self.requests, served.layout, self.s.max_request_bytes,
                                              self.online.get(model), int(self.s.max_clock_skew_seconds * 1000))
        for version, role in served.roles():
            self.metrics.version_info.labels(model, version, role).set(1)
        log.info("%s serves %s", model, ", ".join(f"{v} ({r.lower()})" for v, r in served.roles()))

    def _resubscribe(self) -> None:
        self._by_topic = {self.catalog.requests(m): m for m in self.served}
        topics = tuple(sorted(self._by_topic))
        if topics == self._subscribed:
            return
        if topics:
            self.consumer.subscribe(list(topics))
        else:
            self.consumer.unsubscribe()
        self._subscribed = topics
