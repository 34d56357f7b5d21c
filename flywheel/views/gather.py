"""Everything one report or status frame shows, gathered from the real sources and nothing
rendered: the store, the artifact store and the registry's event log (durable), the dead-letter
topic and the Prometheus endpoints (only while a stack runs). Each part says where it came from,
or why it is missing."""
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from flywheel.config import Config
from flywheel.errors import NotFound
from flywheel.feature_store import FeatureStore
from flywheel.processors.models.history import EventLog
from flywheel.processors.models.refusals import RefusalLog
from flywheel.stack import StackState
from flywheel.streams.errors import BrokerUnavailable
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.topics import TopicCatalog
from flywheel.views import history, timeline, topics
from flywheel.views.stackfile import read_stack
from flywheel.wiring import schema_registry

DEFAULT_LOOKBACK_MS = 7 * 86_400_000


class NoModels(NotFound):
    """No model is registered in the data dir, and the user named none."""


@dataclass
class Part:
    """Where a part of the view came from; `missing` says why it is empty."""
    source: str = ""
    missing: str = ""


@dataclass
class ModelView:
    history: history.ModelHistory
    latency: list[history.LatencyBin]
    events: list[timeline.Event]
    events_part: Part
    latency_part: Part
    deployment: dict | None = None           # the last ModelEvent: the whole deployment state now

    def role(self, version: str) -> str:
        """live, canary or shadow as the registry says now; retired for a version it no longer serves."""
        d = self.deployment or {}
        if version == d.get("live_version"):
            return "live"
        if version == d.get("canary_version"):
            return "canary"
        if version in (d.get("shadow_versions") or ()):
            return "shadow"
        return "retired" if version in (d.get("versions") or {}) else ""

    def awaiting_approval(self, version: str) -> bool:
        """The version is the canary, and it passed its evidence and waits for a person."""
        d = self.deployment or {}
        return bool(d.get("awaiting_approval")) and version == d.get("canary_version")


@dataclass
class ReportData:
    generated_at: int
    data_dir: str
    start: int
    end: int
    models: list[ModelView]
    dead_letters: list[topics.DeadLetterCount] = field(default_factory=list)
    dead_letters_part: Part = field(default_factory=Part)
    stack: StackState | None = None


def live_kafka(config: Config, stack: StackState | None) -> KafkaSettings | None:
    """Settings that reach a broker that is up: the running stack's, or a configured cluster's.
    None when neither exists (an embedded broker that stopped took its topics with it)."""
    if stack is not None:
        return dataclasses.replace(config.kafka, bootstrap=stack.bootstrap)
    return config.kafka if config.kafka.bootstrap else None


def models_to_show(data_dir: Path, wanted: list[str]) -> list[str]:
    if wanted:
        return wanted
    found = history.known_models(data_dir)
    if not found:
        raise NoModels(f"no registered model in {data_dir / 'models'}; name one with --model")
    return found


def model_view(store: FeatureStore, data_dir: Path, model: str, start: int, end: int,
               latency_bins: int = 40) -> ModelView:
    h = history.gather(store, data_dir, model, start, end)
    logged = EventLog(data_dir).events(model)
    events = timeline.merge(timeline.drift_events(model, h.windows), timeline.retrain_events(h.retrains),
                            timeline.model_events(model, logged, start, end),
                            timeline.refusal_events(model, RefusalLog(data_dir).records(), start, end))
    part = Part("monitor windows and retrain records (store); ModelEvents (the registry's event log, "
                f"{data_dir / 'models' / model / 'events.jsonl'}); refusals ({RefusalLog(data_dir).path})")
    latency = history.latency(store, model, start, end, latency_bins) if latency_bins else []
    latency_part = Part("labelled requests in the feedback store: predicted_at - event_time",
                        "" if latency else "no labelled feedback in this time range")
    return ModelView(h, latency, events, part, latency_part, logged[-1] if logged else None)


def report_data(config: Config, store: FeatureStore, wanted: list[str], since: int | None,
                until: int | None = None) -> ReportData:
    data_dir = config.data_dir
    models = models_to_show(data_dir, wanted)
    end = until or int(time.time() * 1000) + 1
    if since is None:
        starts = [t for t in (history.earliest(store, data_dir, m) for m in models) if t is not None]
        since = min(starts) if starts else end - DEFAULT_LOOKBACK_MS
    stack = read_stack(data_dir)
    views = [model_view(store, data_dir, m, since, end) for m in models]
    letters, letters_part = dead_letters(config, live_kafka(config, stack), since, end)
    return ReportData(int(time.time() * 1000), str(data_dir), since, end, views, letters, letters_part, stack)


def dead_letters(config: Config, kafka: KafkaSettings | None, start: int, end: int
                 ) -> tuple[list[topics.DeadLetterCount], Part]:
    if kafka is None:
        return [], Part(missing="no broker is running: dead letters live on the deadletter topic, which the "
                                "embedded broker keeps in memory only (and in the processors' Prometheus "
                                "counters while they run)")
    topic = TopicCatalog(kafka).deadletter
    try:
        records = topics.read_all(kafka, schema_registry(config), topic)
    except BrokerUnavailable as e:
        return [], Part(missing=f"the {topic} topic is not readable: {e}")
    letters = [d for d in topics.dead_letter_counts(records) if start <= d.at < end]
    return letters, Part(f"the {topic} topic")
