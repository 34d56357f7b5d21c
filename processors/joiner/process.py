"""The feedback joiner process: predictions of every model and ground truth in, FeedbackRecords out
(to the store, then to `feedback`), dead letters for what cannot be joined.

One batch: decode; then one store read and one store write for the whole batch (`Join.add`):
store predictions and join labels that waited for them; join labels with stored predictions (or
park them); give up on labels whose wait is over; then, in one Kafka
transaction (or, at-least-once, produce-flush-commit), the feedback records, the dead letters and
the input offsets. The store is written before anything is committed, so offsets never run ahead
of acknowledged writes; store writes are upserts by key, so a batch redone after a crash changes
nothing there.

A label without a prediction is held in memory for `early_label_wait_seconds` (`Join`), joining
every prediction of its request that comes meanwhile (once it has met one, only for
`held_after_join_seconds` more), and its partition's committed offset stays at the oldest held
label: after a restart those labels are read again and held again, instead of
being forgotten. The price is that labels after it are processed again too, so `feedback` may
carry a record twice after a restart (the store does not); the monitor keeps one record per
request and version per window. The holds are bounded (`max_held_labels`, `max_held_bytes`):
before each batch the oldest are given up, as `hold_bound` dead letters, until the batch's
labels fit, so a flood of labels for unknown requests cannot hold the offset or memory.

Records with the `flywheel-replay` header are joined and stored flagged `replay`, and their
feedback carries the header on; they are not counted as live traffic in any metric.
"""
import collections
import logging
import math
import threading
import time

from confluent_kafka import Message, TopicPartition
from flywheel.feature_store import FeatureStore, wall_clock_ms
from flywheel.processors.joiner.holds import Hold, Holds, message_size
from flywheel.processors.joiner.join import REPLAY_FLAG, Join, JoinResult, Label, PredictionRecord, prediction_record
from flywheel.processors.joiner.settings import JoinerSettings
from flywheel.processors.models import ModelFollower
from flywheel.processors.runtime import CommitError, ProcessorMetrics
from flywheel.processors.runtime.pipeline import Outbox
from flywheel.processors.runtime.processor import Endpoint, StreamProcessor
from flywheel.schemas import AvroSerde
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.schemas.wire.feedback import FeedbackEncoder
from flywheel.schemas.wire.ground_truth import GroundTruthDecoder
from flywheel.schemas.wire.prediction import PredictionDecoder
from flywheel.streams.generations import logical_name
from flywheel.streams.replay import headers as replay_headers
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import check_copartitioned
from prometheus_client import Counter, Gauge, Histogram

PROCESSOR = "joiner"
log = logging.getLogger(__name__)
DELAY_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86_400, 3 * 86_400, 7 * 86_400)


def is_replay(msg: Message) -> bool:
    headers = msg.headers()        # None for most records: nothing to search
    return headers is not None and replay_headers.get(headers, replay_headers.REPLAY) is not None


class JoinerMetrics(ProcessorMetrics):
    def __post_init__(self):
        super().__post_init__()
        r = self.registry
        self.joined = Counter("flywheel_feedback_joined", "FeedbackRecords written (live traffic)",
                              ["model", "version"], registry=r)
        self.replaced = Counter("flywheel_labels_replaced", "Labels that replaced an earlier label of the same request",
                                ["model"], registry=r)
        self.label_delay = Histogram("flywheel_label_delay_seconds", "Label time minus the request's event time",
                                     ["model"], buckets=DELAY_BUCKETS, registry=r)
        self.held = Gauge("flywheel_held_labels", "Labels held for their predictions", registry=r)
        self.held_bytes = Gauge("flywheel_held_label_bytes", "Memory the held labels keep", registry=r)
        self.record_path = Gauge("flywheel_record_path", "1 for the path the joiner reads and writes records on: "
                                 "compiled (the compiled core) or python", ["path"], registry=r)
        self.given_up = Counter("flywheel_held_labels_given_up", "Held labels given up before their wait ended, "
                                "to stay within max_held_labels and max_held_bytes", registry=r)




class FeedbackJoiner(StreamProcessor):
    name = PROCESSOR

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, store: FeatureStore,
                 settings: JoinerSettings, metrics: JoinerMetrics | None = None,
                 stop: threading.Event | None = None, instance: str | None = None, clock=wall_clock_ms,
                 endpoint: Endpoint | None = None):
        # Range assignment gives partition k of the labels topic and of every predictions topic to
        # one instance: with the topics co-partitioned (checked here), a request id's label and
        # predictions meet in one joiner, the only writer of its label count.
        super().__init__(kafka, registry, metrics or JoinerMetrics(), settings.group_id,
                         transactional_id=f"{settings.group_id}.{instance or settings.instance_id}"
                         if settings.exactly_once else None,
                         consumer_config={"topic.metadata.refresh.interval.ms": 5000,
                                          "partition.assignment.strategy": "range"}, stop=stop, endpoint=endpoint)
        try:
            check_copartitioned(self.consumer, self.catalog.labels, self.catalog.predictions_pattern())
        except Exception:
            super().close()
            raise
        self.settings = settings
        self.clock = clock
        self.join = Join(store, settings)
        self._predictions = self.held(PredictionDecoder(AvroSerde(registry, "Prediction"), settings.compiled))
        self._labels = GroundTruthDecoder(AvroSerde(registry, "GroundTruth"), settings.compiled)
        self._feedback = FeedbackEncoder(AvroSerde(registry, "FeedbackRecord"), settings.compiled)
        paths = {self._predictions.path, self._labels.path, self._feedback.path}
        log.info("joiner: records read and written on the %s path", " and ".join(sorted(paths)))
        self.metrics.record_path.labels("compiled" if paths == {"compiled"} else "python").set(1)
        # Labels' model names come from whoever produced them: only registered ones become
        # metric label values (a fixed "unregistered" otherwise), so cardinality stays bounded.
        self._models = ModelFollower(kafka, registry)
        self._models.catch_up()
        self.holds = Holds()
        self._next: dict[tuple[str, int], int] = {}
        self.consumer.subscribe([self.catalog.labels, self.catalog.predictions_pattern()], on_revoke=self._on_revoke)

    def output_topics(self) -> list[str]:
        return [self.catalog.feedback, self.catalog.deadletter]

    def step(self) -> int:
        """Process one batch (and any labels whose wait is over); return the records consumed."""
        size = min(self.settings.batch_size, self.settings.max_held_labels)
        messages = self.consume(size, self.settings.poll_timeout_seconds)
        due = self.holds.due(time.monotonic())
        over = self._make_room(messages)
        due += over
        if not messages and not due:
            return 0
        dead: list[tuple[Message, str, str]] = []
        predictions, labels = self._decode(messages, dead)
        result = self.hold_back(lambda: self.join.add([p for p, _ in predictions], [lb for lb, _ in labels],
                                                      [w.label for w in due]))
        self._track(result, labels, due, dead, {h.label for h in over})
        try:
            self._emit(messages, result, dead)
        except CommitError:
            # The batch is rewound and will be redone (store writes are idempotent); labels whose
            # wait ended are not in it, so they wait on here and are given up on again.
            for key in {(m.topic(), m.partition()) for m in messages}:
                self._next.pop(key, None)
            for hold in due:
                if hold.label.request_id not in self.holds:
                    self.holds.put(hold)
            raise
        self.join.release([w.label for w in due])
        self._count(predictions, labels, result)
        self.metrics.given_up.inc(len(over))
        self.metrics.held.set(len(self.holds))
        self.metrics.held_bytes.set(self.holds.bytes)
        return len(messages)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._models.close()

    # -- one batch, in order -----------------------------------------------------------------------

    def _make_room(self, messages: list[Message]) -> list[Hold]:
        """The oldest holds, given up so that every label of the batch could be held within the bound."""
        labels = self._labels_of(messages)
        return self.holds.over(self.settings.hold_bound, len(labels), sum(map(message_size, labels)))

    def _labels_of(self, messages: list[Message], labels: bool = True) -> list[Message]:
        """The batch's labels (or, not `labels`, its predictions): each topic's name is parsed once
        a batch, not once a record."""
        topics = {t for t in {m.topic() for m in messages} if logical_name(t) == self.catalog.labels}
        return [m for m in messages if (m.topic() in topics) == labels]

    def _decode(self, messages: list[Message], dead: list) -> tuple[list[tuple[PredictionRecord, Message]],
                                                                  list[tuple[Label, Message]]]:
        predictions, labels = [], []
        for m in messages:
            self._next[(m.topic(), m.partition())] = m.offset() + 1
        now_ms = self.clock()
        label_messages = self._labels_of(messages)
        prediction_messages = self._labels_of(messages, labels=False)
        decoded, failures = self._predictions.records([m.value() for m in prediction_messages])
        dead += [(prediction_messages[i], f.reason, f.detail) for i, f in failures]
        for i, value in decoded:
            m = prediction_messages[i]
            predictions.append((prediction_record(value, is_replay(m)), m))
        for m, value in self.decode(self._labels, label_messages, dead):
            if (value["label"] is None) == (value["value"] is None):
                dead.append((m, "invalid_label", "a label needs exactly one of label or value"))
            elif value["value"] is not None and not math.isfinite(value["value"]):
                dead.append((m, "non_finite_label", f"label value {value['value']} is not a finite number"))
            elif problem := self.settings.time_problem(value["labelled_at"], now_ms, replay := is_replay(m)):
                dead.append((m, "time_skew", problem))
            else:
                labels.append((Label.from_ground_truth(value, replay), m))
        return predictions, labels

    def _track(self, result: JoinResult, labels: list[tuple[Label, Message]], due: list[Hold],
               dead: list, over: set[Label]) -> None:
        """Hold labels the join holds (their offsets with them); release those refused; dead-letter
        late and unknown (`over`: given up early, for the bound). Costs what the batch holds, not
        what is held (holds.py)."""
        known = {lb: m for lb, m in labels} | {h.label: h.message for h in due}
        now = time.monotonic()
        for label in result.held:
            self.holds.put(Hold(label, known[label], now + self.settings.early_label_wait_seconds))
        for label in result.met:    # held on briefly, for the request's other versions
            self.holds.shorten(label, now + self.settings.held_after_join_seconds)
        for label, reason, detail in result.refused:
            message = self._message_of(label, known)
            if label.request_id not in self.join.held:
                self.holds.pop(label.request_id)     # the join let it go: so do its offset and wait
            if message is not None:
                dead.append((message, reason, detail))
        for label in result.unknown:
            dead.append((known[label], *self._unknown(label, label in over)))
        for label, prediction in result.late:
            if (message := self._message_of(label, known)) is not None:
                dead.append((message, "late_label",
                             f"label at {label.labelled_at} is more than {self.settings.join_window_seconds:g}s "
                             f"after prediction {prediction.model}/{prediction.model_version} "
                             f"at {prediction.predicted_at}"))

    def _unknown(self, label: Label, over: bool) -> tuple[str, str]:
        """Why a label that met no prediction is given up: (reason, detail)."""
        s = self.settings
        if over:
            return "hold_bound", (f"no prediction for request {label.request_id} yet; given up before its "
                                  f"{s.early_label_wait_seconds:g}s wait ended: the joiner held as many labels as "
                                  f"it may (max_held_labels {s.max_held_labels}, max_held_bytes {s.max_held_bytes})")
        return "unknown_request", (f"no prediction for request {label.request_id} after "
                                   f"{s.early_label_wait_seconds:g}s")

    def _message_of(self, label: Label, known: dict[Label, Message]) -> Message | None:
        """The message a label came in: this batch's, a given-up one's or a held one's."""
        if label in known:
            return known[label]
        hold = self.holds.get(label.request_id)
        return hold.message if hold is not None and hold.label == label else None

    def _emit(self, messages: list[Message], result: JoinResult, dead: list) -> None:
        outbox, feedback = Outbox(), result.feedback
        outbox.produce_many(
            self.catalog.feedback, [self._feedback.encode(vars(record)) for record in feedback],
            [record.request_id.encode() for record in feedback],
            [[(replay_headers.REPLAY, b"joined")] if REPLAY_FLAG in record.flags else None for record in feedback])
        self.commit(messages, outbox, dead, self._safe_offsets())

    def _safe_offsets(self) -> list[TopicPartition]:
        """Per partition: the next offset to read, or the oldest held label's, if earlier."""
        upto = dict(self._next)
        for key, offset in self.holds.oldest_offsets().items():
            upto[key] = min(upto.get(key, offset), offset)
        return [TopicPartition(t, p, o) for (t, p), o in upto.items()]

    def _count(self, predictions, labels, result: JoinResult) -> None:
        """Counted per model and version, one increment each per batch (not one per record)."""
        m = self.metrics
        self._models.poll(0)
        name = lambda model: self._models.label_values(model)[0]   # noqa: E731
        records_in = collections.Counter(name(p.model) for p, _ in predictions if not p.replay)
        records_in.update(name(label.model) for label, _ in labels if not label.replay)
        for model, n in records_in.items():
            m.records_in.labels(PROCESSOR, model).inc(n)
        replaced_held = collections.Counter(name(label.model) for label in result.replaced_held
                                               if not label.replay)
        for model, n in replaced_held.items():
            m.replaced.labels(model).inc(n)
        live = [record for record in result.feedback if REPLAY_FLAG not in record.flags]
        known = {(r.model, r.model_version): self._models.label_values(r.model, r.model_version) for r in live}
        for key, n in collections.Counter((r.model, r.model_version) for r in live).items():
            m.joined.labels(*known[key]).inc(n)
        for record in live:
            m.label_delay.labels(known[(record.model, record.model_version)][0]).observe(
                max(0.0, (record.labelled_at - record.event_time) / 1000))
        for model, n in collections.Counter(known[(r.model, r.model_version)][0] for r in live
                                            if r.label_count > 1).items():
            m.replaced.labels(model).inc(n)

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        for key in gone:
            self._next.pop(key, None)
        self.join.forget(self.holds.drop_partitions(gone))


__all__ = ["FeedbackJoiner", "JoinerMetrics", "JoinerSettings"]
