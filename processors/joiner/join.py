"""The join of predictions with ground truth, against the store (no Kafka here).

Predictions are stored by request id (every version's: live, canary and shadow answers are each
joined, so each version is scored on the same truth). A label finds its predictions in the store
and becomes one FeedbackRecord per version; a label that comes first waits in the store as a
pending label and is joined when its prediction arrives. A label whose prediction is older than the
join window is late; a label still without a prediction after `early_label_wait_seconds` is for
an unknown request. Both are the caller's to dead-letter. Every store write is an upsert by key,
so processing the same records again changes nothing; a different label for a joined request
replaces the first and the store counts it (label_count).
"""
from dataclasses import dataclass, field

from feature_store import FeatureStore, FeedbackRecord, PendingLabel, PredictionRecord

REPLAY_FLAG = "replay"


@dataclass
class JoinerSettings:
    """TOML [joiner], env FLYWHEEL_JOINER_<FIELD>."""
    join_window_seconds: float = 7 * 86_400.0
    # Predictions are kept this much longer than the window, so a label a little past the window
    # is told apart as late rather than unknown.
    prediction_ttl_margin_seconds: float = 86_400.0
    early_label_wait_seconds: float = 600.0    # how long a label may wait for its prediction
    group_id: str = "flywheel-joiner"
    batch_size: int = 2000
    poll_timeout_seconds: float = 0.2
    exactly_once: bool = True                  # Kafka transactions for feedback + dead letters + offsets
    # Client clocks: a label's labelled_at may be at most this far ahead of the joiner's clock,
    # and (live labels) at most the join window plus the prediction margin plus this behind it;
    # else it is a `time_skew` dead letter (a negative or far-future time never reaches a window).
    max_clock_skew_seconds: float = 300.0

    @property
    def window_ms(self) -> int:
        return int(self.join_window_seconds * 1000)

    @property
    def prediction_ttl_s(self) -> int:
        return int(self.join_window_seconds + self.prediction_ttl_margin_seconds)

    def time_problem(self, labelled_at: int, now_ms: int, replay: bool) -> str | None:
        """Why a label's time is refused (None: it is fine). Replays keep their historical times."""
        skew_ms = int(self.max_clock_skew_seconds * 1000)
        if labelled_at < 0:
            return f"labelled_at {labelled_at} is before 1970"
        if labelled_at > now_ms + skew_ms:
            return f"labelled_at {labelled_at} is {(labelled_at - now_ms) / 1000:.0f}s ahead of the joiner's clock " \
                   f"(max_clock_skew_seconds {self.max_clock_skew_seconds:g})"
        oldest = now_ms - self.prediction_ttl_s * 1000 - skew_ms
        if not replay and labelled_at < oldest:
            return f"labelled_at {labelled_at} is {(now_ms - labelled_at) / 1000:.0f}s old, older than any " \
                   f"prediction the joiner keeps ({self.prediction_ttl_s}s)"
        return None


@dataclass(frozen=True)
class Label:
    """A GroundTruth record and whether it came from a replay."""
    request_id: str
    labelled_at: int
    model: str | None = None
    label: str | None = None
    value: float | None = None
    source: str = "unknown"
    replay: bool = False

    @classmethod
    def from_ground_truth(cls, record: dict, replay: bool = False) -> "Label":
        return cls(record["request_id"], record["labelled_at"], record.get("model"), record.get("label"),
                   record.get("value"), record.get("source", "unknown"), replay)

    @classmethod
    def from_pending(cls, pending: PendingLabel) -> "Label":
        replay = pending.source.endswith("+replay")
        return cls(pending.request_id, pending.labelled_at, pending.model, pending.label, pending.value,
                   pending.source.removesuffix("+replay"), replay)

    def pending(self) -> PendingLabel:
        # The pending table has no replay column; the flag rides on the source.
        return PendingLabel(self.request_id, self.labelled_at, self.model, self.label, self.value,
                            self.source + ("+replay" if self.replay else ""))


@dataclass
class JoinResult:
    feedback: list[FeedbackRecord] = field(default_factory=list)   # as stored (label_count set)
    late: list[tuple[Label, PredictionRecord]] = field(default_factory=list)
    refused: list[tuple[Label, str, str]] = field(default_factory=list)   # (label, reason, detail)
    waiting: list[Label] = field(default_factory=list)              # stored as pending
    unknown: list[Label] = field(default_factory=list)              # waited long enough: no prediction
    replaced_pending: list[Label] = field(default_factory=list)     # a pending label was replaced

    def merge(self, other: "JoinResult") -> None:
        self.feedback += other.feedback
        self.late += other.late
        self.refused += other.refused
        self.waiting += other.waiting
        self.unknown += other.unknown
        self.replaced_pending += other.replaced_pending


def prediction_record(prediction: dict, replay: bool = False) -> PredictionRecord:
    return PredictionRecord.from_dict(prediction, replay=replay)


def feedback_record(prediction: PredictionRecord, label: Label) -> FeedbackRecord:
    flags = list(prediction.flags)
    if (prediction.replay or label.replay) and REPLAY_FLAG not in flags:
        flags.append(REPLAY_FLAG)
    return FeedbackRecord(
        request_id=prediction.request_id, entity_id=prediction.entity_id, model=prediction.model,
        model_version=prediction.model_version, event_time=prediction.event_time,
        predicted_at=prediction.predicted_at, labelled_at=label.labelled_at,
        numeric=dict(prediction.numeric), categorical=dict(prediction.categorical),
        predicted_label=prediction.label, predicted_value=prediction.value, scores=dict(prediction.scores),
        confidence=prediction.confidence, true_label=label.label, true_value=label.value, flags=flags)


class Join:
    def __init__(self, store: FeatureStore, settings: JoinerSettings):
        self.store = store
        self.settings = settings

    def add_predictions(self, predictions: list[PredictionRecord]) -> JoinResult:
        """Store predictions, then join any labels that were waiting for them."""
        predictions = self._without_replays_of_live(predictions)
        if not predictions:
            return JoinResult()
        self.store.put_predictions(predictions, ttl_s=self.settings.prediction_ttl_s)
        waiting = self.store.get_pending(sorted({p.request_id for p in predictions}))
        result = JoinResult()
        by_request: dict[str, list[PredictionRecord]] = {}
        for p in predictions:
            if p.request_id in waiting:
                by_request.setdefault(p.request_id, []).append(p)
        for request_id, preds in by_request.items():
            self._pair(Label.from_pending(waiting[request_id]), preds, result)
        self._store_feedback(result)
        if by_request:
            self.store.delete_pending(sorted(by_request))
        return result

    def add_labels(self, labels: list[Label], park: bool = True) -> JoinResult:
        """Join labels with their stored predictions. Those without one wait in the store
        (`park`), or, when their wait is over (`park=False`), are returned as unknown and their
        pending rows removed. Labels count in order, within a batch as across batches."""
        found = self.store.get_predictions(sorted({lb.request_id for lb in labels}))
        result = JoinResult()
        parked: dict[str, Label] = {}
        for label in labels:        # in order: the store counts a second label for a request
            preds = [p for p in found.get(label.request_id, []) if label_matches(label, p)]
            if preds:
                self._pair(label, preds, result)
            elif park:
                if label.request_id in parked and parked[label.request_id] != label:
                    result.replaced_pending.append(label)
                parked[label.request_id] = label
            else:
                result.unknown.append(label)
        result.waiting = list(parked.values())
        if result.waiting:
            self._park(result)
        self._store_feedback(result)
        if not park:
            self._unpark(labels)
        return result

    def _park(self, result: JoinResult) -> None:
        before = self.store.get_pending([lb.request_id for lb in result.waiting])
        result.replaced_pending += [lb for lb in result.waiting if lb.request_id in before
                                    and Label.from_pending(before[lb.request_id]) != lb]
        self.store.put_pending([lb.pending() for lb in result.waiting], ttl_s=int(self.settings.join_window_seconds))

    def _unpark(self, labels: list[Label]) -> None:
        """Remove the pending rows of these labels, unless a newer label has replaced one meanwhile
        (that one has its own wait)."""
        pending = self.store.get_pending([lb.request_id for lb in labels])
        gone = [lb.request_id for lb in labels
                if lb.request_id in pending and Label.from_pending(pending[lb.request_id]) == lb]
        if gone:
            self.store.delete_pending(gone)

    def _pair(self, label: Label, predictions: list[PredictionRecord], result: JoinResult) -> None:
        # A classifier's prediction scores every class it knows: a label that is not one of them
        # is not truth for this model (the model's manifest labels are exactly those keys).
        classes = {c for p in predictions for c in p.scores}
        if label.label is not None and classes and label.label not in classes:
            result.refused.append((label, "unknown_class", f"label {label.label[:100]!r} is not one of the model's "
                                                           f"classes {sorted(classes)}"))
            return
        # A class for a regressor or a number for a classifier is not truth for it either (and a
        # label can then add no more to a FeedbackRecord than a class name the Prediction holds).
        classifier = any(p.label is not None or p.scores for p in predictions)
        regressor = any(p.value is not None for p in predictions)
        if (label.label is not None and regressor and not classifier) or \
                (label.value is not None and classifier and not regressor):
            result.refused.append((label, "wrong_label_kind",
                                   f"a {'class' if label.label is not None else 'value'} label for a "
                                   f"{'regressor' if regressor else 'classifier'}"))
            return
        for p in predictions:
            if label.labelled_at - p.predicted_at > self.settings.window_ms:
                result.late.append((label, p))
            else:
                result.feedback.append(feedback_record(p, label))

    def _store_feedback(self, result: JoinResult) -> None:
        result.feedback = [f for f in result.feedback if not (REPLAY_FLAG in f.flags and self._live_row(f))]
        if result.feedback:
            result.feedback = self.store.put_feedback(result.feedback)

    # Replays never overwrite live rows: the store keys rows by (request, model, version) only, and
    # its readers (retrainer, backtest, rollout) must keep every live example. A replay of a request
    # that live traffic already answered or labelled changes nothing; live traffic after a replay
    # replaces the replay's rows.

    def _without_replays_of_live(self, predictions: list[PredictionRecord]) -> list[PredictionRecord]:
        replays = [p for p in predictions if p.replay]
        if not replays:
            return predictions
        stored = self.store.get_predictions(sorted({p.request_id for p in replays}))
        live = {(p.request_id, p.model, p.model_version) for ps in stored.values() for p in ps if not p.replay}
        return [p for p in predictions if not (p.replay and (p.request_id, p.model, p.model_version) in live)]

    def _live_row(self, record: FeedbackRecord) -> bool:
        """Whether a live (not replayed) feedback row exists for this record's key."""
        rows = self.store.feedback(record.model, record.event_time, record.event_time + 1, record.model_version)
        return any(r.request_id == record.request_id and REPLAY_FLAG not in r.flags for r in rows)


def label_matches(label: Label, prediction: PredictionRecord) -> bool:
    return label.model in (None, prediction.model)
