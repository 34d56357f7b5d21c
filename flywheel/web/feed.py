"""What connects the review queue to Kafka: a reader of the `review` and `labels` topics (and the
reviewed models' shadow answers, flywheel/web/shadows.py) from
their first record (no consumer group, nothing committed: a restarted console reads both again,
so an item stays in the queue until a verdict for it is on `labels`), and the verdicts, published as
GroundTruth labels with source `review` and joined like any other label."""
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from flywheel.errors import BadInput, Unavailable
from flywheel.processors.models.manifest import Manifest
from flywheel.processors.models.store import ArtifactStore
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.labels import LabelPublisher
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.subscriber import Subscriber
from flywheel.streams.topics import TopicCatalog
from flywheel.web.queue import Item, ReviewQueue, now_ms
from flywheel.web.shadows import ShadowAnswers

log = logging.getLogger(__name__)
SOURCE = "review"
RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Verdict:
    item: Item
    reviewer: str
    label: str | None = None        # classifiers
    value: float | None = None      # regressors
    note: str = ""

    @property
    def confirms(self) -> bool:
        return self.label == self.item.label if self.item.label is not None else self.value == self.item.value


class ReviewFeed:
    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, data_dir: Path, queue: ReviewQueue,
                 stop: threading.Event):
        self.kafka = kafka
        self.registry = registry
        self.queue = queue
        self.stop = stop
        self.caught_up = threading.Event()        # both topics read to their end once
        self.failure: BaseException | None = None  # the bug that stopped the reader, re-raised by the console
        self._artifacts = ArtifactStore(data_dir)
        self._manifests: dict[tuple[str, str], Manifest | None] = {}     # a registered version never changes
        self._labels = LabelPublisher(kafka, registry, source=SOURCE)
        self.shadows = ShadowAnswers(kafka, registry)
        self._thread = threading.Thread(target=self._run, name="review-feed", daemon=True)

    def start(self) -> "ReviewFeed":
        self._thread.start()
        return self

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)
        if self.failure is not None:
            raise self.failure

    def publish(self, verdict: Verdict) -> None:
        """The verdict on the labels topic, acknowledged, before the item leaves the queue."""
        item = verdict.item
        self._labels.label(item.request_id, verdict.label, verdict.value, model=item.model,
                           reviewer=verdict.reviewer, note=verdict.note or None)
        self._labels.flush(10.0)          # DeliveryFailed (backpressure): the item stays with its reviewer
        self.queue.reviewed(item.request_id, now_ms())

    def _run(self) -> None:
        """Read until stopped; an unavailable broker is waited out (then both topics are read
        again from the start, which adds nothing twice); anything else is a bug: the console stops."""
        try:
            while not self.stop.is_set():
                try:
                    self._read()
                except Unavailable as e:
                    log.warning("review feed: %s; reading again in %gs", e, RETRY_SECONDS)
                    self.stop.wait(RETRY_SECONDS)
        except BaseException as e:
            log.exception("review feed failed: the console stops")
            self.failure = e
            self.stop.set()

    def _read(self) -> None:
        catalog = TopicCatalog(self.kafka)
        with Subscriber(self.kafka, self.registry, catalog.labels, "GroundTruth", start="earliest") as labels, \
                Subscriber(self.kafka, self.registry, catalog.review, "ReviewItem", start="earliest") as review:
            while not self.stop.is_set():
                # Labels first: an item whose verdict is already on the topic never shows.
                done = labels.poll_batch(5000, 0.2)
                for r in done:
                    if isinstance(r.value, dict) and r.value.get("source") == SOURCE:
                        self.queue.reviewed(r.value["request_id"], r.value["labelled_at"])
                items = review.poll_batch(5000, 0.2)
                for r in items:
                    if isinstance(r.value, dict):
                        self.queue.add(self._item(r.value))
                        self.shadows.follow(r.value["model"])
                if not self.shadows.poll() and not done and not items:
                    self.caught_up.set()
        self.shadows.close()

    def _item(self, record: dict) -> Item:
        manifest = self._manifest(record["model"], record["model_version"])
        declared = [f.name for f in manifest.features.features] if manifest else []
        values = {**record.get("numeric", {}), **record.get("categorical", {})}
        choices = tuple(manifest.output.labels or ()) if manifest else ()
        return Item(record["request_id"], record["model"], record["model_version"], tuple(record["reasons"]),
                    record.get("label"), record.get("value"), record.get("confidence"),
                    tuple((name, values.get(name)) for name in declared), record["created_at"], choices)

    def _manifest(self, model: str, version: str) -> Manifest | None:
        if (model, version) not in self._manifests:
            try:
                self._manifests[model, version] = self._artifacts.manifest(model, version)
            except (BadInput, OSError) as e:
                log.warning("no manifest of %s %s here (%s): its review items show no features", model, version, e)
                self._manifests[model, version] = None
        return self._manifests[model, version]
