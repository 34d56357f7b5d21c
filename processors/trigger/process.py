"""The retrain trigger: every `interval_seconds` (and at once when the error detector finds a
change, or the change has the labels its retrain waits for), for every model the `models` topic
names, gather what is known (the live version's monitor windows and the model's retrain bookkeeping from the
store, its labelled feedback from the `feedback` topic), apply the policy, and when it says so emit
RetrainRequested on `retrain`.

Labelled feedback is not re-read each round: the trigger follows the `feedback` topic and keeps,
per model, its live version's feedback as counts in one-minute buckets of labelled_at over the
lookback, plus the ADWIN error stream (tally.py). A round costs what the topic brought since the
last one; memory is bounded by the lookback over the bucket width, not by the number of labels.
The store's feedback is read once per live version, to build its tally (at start-up, and when a
version becomes live); `flywheel retrain`, which evaluates once, reads it once.

Bookkeeping comes first: the request is written to the store as in flight (with the model's
last-request time, which the cooldown reads) before it is produced, so a crash in between leaves a
request the store knows about rather than one it does not; a produce that fails marks it failed.
A retrain stays in flight until it is over: rejected or failed (the retrainer says so), or, when
it produced a candidate, until the rollout promoted or rolled back that canary (seen here on the
`models` topic). The trigger reads the `retrain` topic too: a request still in flight that the
topic does not hold `delivery_grace_ms` after it was made was never delivered (the trigger died
between marking and producing it) and is marked failed, instead of blocking retraining until
`in_flight_timeout_seconds`. The cooldown counts from the last request or from the end of the
last retrain that gave no version, whichever is later, so a retrain that fails slowly is not
requested again the moment it fails. `flywheel retrain` uses the same `Requester` once.
"""
import logging
import threading
import time
from dataclasses import dataclass, field

from flywheel.feature_store import FeatureStore, FeedbackRecord, RetrainRecord, WindowMetrics, retrying, wall_clock_ms
from flywheel.processors.joiner.join import REPLAY_FLAG
from flywheel.processors.models.follower import ModelFollower
from flywheel.processors.runtime import ProcessorMetrics
from flywheel.processors.runtime.failures import run_batches
from flywheel.processors.runtime.leadership import Leadership, SoleLeader
from flywheel.processors.trigger.detector import ChangePoint, in_label_order
from flywheel.processors.trigger.policy import Decision, ModelState, decide, retrain_request
from flywheel.processors.trigger.settings import TriggerSettings
from flywheel.processors.trigger.tally import LiveTallies
from flywheel.schemas import AvroSerde, DecodeFailure
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.schemas.setting import for_model
from flywheel.streams.clients import make_producer
from flywheel.streams.delivery import TrackedProducer
from flywheel.streams.replay import headers as replay_headers
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.subscriber import Subscriber
from flywheel.streams.topics import TopicCatalog
from prometheus_client import Counter

PROCESSOR = "trigger"
FOLLOW_SECONDS = 1.0    # between rounds, how often the feedback topic is read for an error change to act on
log = logging.getLogger(__name__)


class TriggerMetrics(ProcessorMetrics):
    def __post_init__(self):
        super().__post_init__()
        self.requests = Counter("flywheel_retrain_requests", "Retrain requests emitted, one per reason",
                                ["model", "reason"], registry=self.registry)
        self.changes = Counter("flywheel_error_changes_detected", "Rises of a live version's labelled error "
                               "the change detector found (each once, when found)", ["model", "version"],
                               registry=self.registry)
        self.skipped = Counter("flywheel_trigger_skipped_feedback", "Feedback records the trigger could not "
                               "decode and left out (the monitor dead-letters them)", ["reason"],
                               registry=self.registry)


@dataclass
class LiveVersion:
    version: str | None = None
    since_ms: int | None = None      # when it became live (as far as the `models` topic remembers)
    canary: str | None = None        # the canary awaiting a decision
    decided: set[str] = field(default_factory=set)    # versions that were canaries and no longer are


@dataclass
class LiveVersions:
    """Which version of each model is live and since when, and its canaries, from ModelEvents in order."""
    models: dict[str, LiveVersion] = field(default_factory=dict)

    def apply(self, events: list[dict]) -> None:
        for event in events:
            current = self.models.setdefault(event["model"], LiveVersion())
            if event.get("live_version") != current.version:
                current.version, current.since_ms = event.get("live_version"), event["at"]
            if current.canary and event.get("canary_version") != current.canary:
                current.decided.add(current.canary)
            current.canary = event.get("canary_version")


def drift_history(windows: list[WindowMetrics]) -> tuple[list[bool], int | None]:
    """Flags of the judged windows (oldest first; a window carried into the next one was not judged)
    and the start of the trailing flagged run."""
    judged = [w for w in windows if "drift_flagged" in w.values]
    return [bool(w.values["drift_flagged"]) for w in judged], flagged_run_start(judged)


def flagged_run_start(windows: list[WindowMetrics]) -> int | None:
    """Start of the first window of the trailing run of flagged windows (None: the last is not flagged)."""
    since = None
    for w in reversed(windows):
        if not w.values["drift_flagged"]:
            break
        since = w.window_start
    return since


class Requester:
    """Gathers a model's state, decides, and emits. No loop: the process and the CLI drive it."""

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, store: FeatureStore,
                 settings: TriggerSettings, metrics: TriggerMetrics | None = None, clock=wall_clock_ms,
                 stop: threading.Event | None = None, delivery_grace_ms: int = 60_000):
        self.store, self.settings, self.clock = store, settings, clock
        self.metrics = metrics or TriggerMetrics()
        self.stop = stop or threading.Event()
        self.topic = TopicCatalog(kafka).retrain
        self.delivery_grace_ms = delivery_grace_ms      # a produce is flushed within seconds
        self._serde = AvroSerde(registry, "RetrainRequested")
        self._out = TrackedProducer(make_producer(kafka))
        self._sent = Subscriber(kafka, registry, self.topic, "RetrainRequested", start="earliest")
        self.delivered: set[str] = set()                # retrain ids seen on the retrain topic
        self.tallies = LiveTallies(settings, self._stored_feedback)
        self._announced: dict[str, int] = {}           # model -> detected_at of the change last announced

    def state(self, model: str, live: LiveVersion) -> ModelState:
        now, s = self.clock(), self.settings
        version = live.version
        state = ModelState(model, version, live.since_ms)
        state.in_flight, state.last_request_ms = self._bookkeeping(model, now, live)
        if version is None:
            return state
        lookback = now - int(s.lookback_seconds * 1000)
        windows = self._read(lambda: list(self.store.metrics(model, version, lookback, now)))
        state.flagged_windows, state.flagged_since = drift_history(windows)
        tally = self.tallies.of(model, version, now)
        lookback_total = tally.since(lookback)
        state.performance = lookback_total.counts.performance()
        state.change = tally.change
        self._announce(model, version, state.change)
        state.hard_examples = lookback_total.hard_examples
        since = max(state.last_request_ms or 0, live.since_ms or 0)
        state.new_labels = tally.since(since).labels
        return state

    def _announce(self, model: str, version: str, change: ChangePoint | None) -> None:
        """Detection is its own event: said when found, whether or not a retrain follows yet
        (that waits for `change_min_labels` labels to train on)."""
        if change is None or self._announced.get(model) == change.detected_at:
            return
        self._announced[model] = change.detected_at
        self.metrics.changes.labels(model, version).inc()
        log.info("error of %s %s rose from %.3f to %.3f since %d (detected at %d, %d labels after the change)",
                 model, version, change.error_before, change.error_after, change.since, change.detected_at,
                 change.labels)

    def _stored_feedback(self, model: str, version: str, start: int, end: int) -> list[FeedbackRecord]:
        return self._read(lambda: [f for f in self.store.feedback(model, start, end, version)
                                   if REPLAY_FLAG not in f.flags])

    def evaluate(self, model: str, live: LiveVersion, manual: bool = False,
                 requested_by: str = "trigger") -> tuple[Decision, dict | None]:
        """Decide for one model; emit and record the request if the policy says so."""
        state, settings = self.state(model, live), for_model(self.settings, model)
        now = self.clock()
        decision = decide(state, settings, now, manual=manual)
        if not decision.request:
            return decision, None
        request = retrain_request(state, decision, settings, now, requested_by)
        self.emit(request)
        return decision, request

    def emit(self, request: dict) -> None:
        model, now = request["model"], request["requested_at"]
        record = RetrainRecord(model, request["retrain_id"], "in_flight", now, now,
                               base_version=request["base_version"], reasons=list(request["reasons"]))
        self._write(lambda: self.store.put_retrain(record))
        self._write(lambda: self.store.put_last_retrain(model, now))
        try:
            self._out.produce(self.topic, self._serde.encode(request), model.encode())
            self._out.flush()
        except Exception as e:
            record.status, record.detail, record.updated_at = "failed", f"not delivered: {e}", self.clock()
            self._write(lambda: self.store.put_retrain(record))
            raise
        for reason in request["reasons"]:
            self.metrics.requests.labels(model, reason).inc()
        log.info("requested retrain %s of %s: %s", request["retrain_id"], model, ", ".join(request["reasons"]))

    def _bookkeeping(self, model: str, now: int, live: LiveVersion) -> tuple[bool, int | None]:
        """(a retrain is in flight, when the cooldown starts); retrains that are over are closed."""
        caught_up = self._read_delivered()
        timeout_ms = int(self.settings.in_flight_timeout_seconds * 1000)
        in_flight, finished = False, []
        for r in self._read(lambda: self.store.retrains(model)):
            if r.status == "in_flight":
                self._close_if_over(r, now, timeout_ms, live, caught_up)
            if r.status == "in_flight":
                in_flight = True
            elif r.new_version is None:
                finished.append(r.updated_at)
        last_request = self._read(lambda: self.store.last_retrain(model))
        return in_flight, max([t for t in (last_request, *finished) if t is not None], default=None)

    def _close_if_over(self, r: RetrainRecord, now: int, timeout_ms: int, live: LiveVersion,
                       caught_up: bool) -> None:
        if r.new_version and r.new_version != live.canary and (r.new_version == live.version
                                                              or r.new_version in live.decided):
            # Its canary was decided. updated_at stays the candidate's acceptance time (the
            # timeline shows it then); the decision has its own ModelEvent.
            r.status = "done"
            r.detail = f"canary {r.new_version} {'promoted' if r.new_version == live.version else 'rolled back'}"
        elif (caught_up and r.new_version is None and r.retrain_id not in self.delivered
              and now - r.requested_at > self.delivery_grace_ms):
            r.status, r.updated_at = "failed", now
            r.detail = "never delivered to the retrain topic (the trigger stopped before producing it)"
        elif now - r.requested_at > timeout_ms:
            r.status, r.updated_at = "failed", now
            r.detail = f"no outcome after {self.settings.in_flight_timeout_seconds:g}s"
        else:
            return
        self._write(lambda: self.store.put_retrain(r))

    def _read_delivered(self) -> bool:
        """Add what reached the retrain topic since the last call; False if its end was not reached
        (then nothing may be concluded from an id's absence)."""
        received, caught_up = self._sent.catch_up()
        self.delivered |= {m.value["retrain_id"] for m in received if isinstance(m.value, dict)}
        return caught_up

    def close(self) -> None:
        self._sent.close()

    def _read(self, call):
        return retrying(call, stop=self.stop)

    _write = _read


class RetrainTrigger:
    """The long-running process: follow `models`, evaluate every model it leads every interval.
    Every trigger process follows every model, so a stand-by's tallies are warm when it takes a
    model's leadership over (see processors/runtime/leadership.py)."""

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, store: FeatureStore,
                 settings: TriggerSettings, metrics: TriggerMetrics | None = None,
                 stop: threading.Event | None = None, clock=wall_clock_ms,
                 leadership: Leadership | SoleLeader | None = None):
        self.settings = settings
        self.leadership = leadership or SoleLeader()
        self.stop = stop or threading.Event()
        self.requester = Requester(kafka, registry, store, settings, metrics, clock, self.stop)
        self.live = LiveVersions()
        self._models = ModelFollower(kafka, registry)
        self._acted_on: dict[str, tuple[int, bool]] = {}     # _changes() as the last step saw them
        # From now: what was joined before is in the store, where a tally's build reads it.
        self._feedback = Subscriber(kafka, registry, TopicCatalog(kafka).feedback, "FeedbackRecord", start="latest")

    def run(self) -> None:
        try:
            # An unreachable broker or store is waited out (backpressure), never an exit.
            run_batches(self._round, self.stop, PROCESSOR)
        finally:
            self.close()

    def close(self) -> None:
        """Leave the leadership group first, so a stand-by takes this process's models over at once."""
        self.leadership.close()
        self._models.close()
        self._feedback.close()
        self.requester.close()

    def _round(self) -> None:
        """A step, then the interval; but the feedback topic is read every FOLLOW_SECONDS meanwhile,
        and an error change found, or come to the labels its retrain waits for, starts the next
        step at once: announcing a change, or asking for its retrain, waits a second, not up to an
        interval (at 200 labels a second, 10 s are 2,000 labels)."""
        self.step()
        deadline = time.monotonic() + self.settings.interval_seconds
        while not self.stop.wait(max(0.0, min(FOLLOW_SECONDS, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return
            self.requester.tallies.add(self._live_feedback())
            if self._changes() != self._acted_on:
                return

    def step(self) -> list[dict]:
        """Catch up on model events, then evaluate every model this process leads; return the
        requests emitted."""
        self.live.apply(self._models.catch_up(timeout=5.0))
        self.requester.tallies.add(self._live_feedback())
        emitted = []
        for model, live in sorted(self.live.models.items()):
            with self.leadership.deciding(model) as leads:
                request = self.requester.evaluate(model, live)[1] if leads else None
            if request:
                emitted.append(request)
        self._acted_on = self._changes()
        return emitted

    def _changes(self) -> dict[str, tuple[int, bool]]:
        """Per model, its live version's latest error change (when found, and whether it has the
        `change_min_labels` its retrain waits for): what a step must see as soon as it changes."""
        out = {}
        for model, tally in self.requester.tallies.models.items():
            if tally.change is not None:
                ripe = tally.change.labels >= for_model(self.settings, model).change_min_labels
                out[model] = (tally.change.detected_at, ripe)
        return out

    def _live_feedback(self) -> list[FeedbackRecord]:
        """What the joiner emitted since the last look, without replays, in the order the labels
        came: a catch-up reads partition by partition, and fed so, the error detector would see
        one partition's labels before another's and fire up to a catch-up's worth of labels late.
        A record that cannot be decoded is left out and counted."""
        received, _ = self._feedback.catch_up()
        live = []
        for m in received:
            if isinstance(m.value, DecodeFailure):
                self.requester.metrics.skipped.labels(m.value.reason).inc()
            elif (replay_headers.get(m.headers, replay_headers.REPLAY) is None
                  and REPLAY_FLAG not in m.value["flags"]):
                live.append(FeedbackRecord.from_dict(m.value))
        return in_label_order(live)
