"""The join of predictions with ground truth, against the store (no Kafka here).

Predictions are stored by request id (every version's: live, canary and shadow answers are each
joined, so each version is scored on the same truth). A label finds its predictions in the store
and becomes one FeedbackRecord per version; a label that comes first waits in the store as a
pending label and is joined when its prediction arrives. A label whose prediction is older than the
join window is late; a label still without a prediction after `early_label_wait_seconds` is for
an unknown request. Both are the caller's to dead-letter. Every store write is an upsert by key,
so processing the same records again changes nothing; a different label for a joined request
replaces the first and the store counts it (label_count).

Known gap: a label that came before its predictions joins the versions in the first batch that
holds any of them, and stops waiting; a version whose prediction comes in a later batch is not
joined with it (test_joiner_join, xfail). The worker writes a request's versions side by side,
so this takes an early label and a batch boundary between two versions of one request.
"""
from dataclasses import dataclass, field

from feature_store import FeatureStore, FeedbackRecord, PendingLabel, PredictionRecord
from processors.runtime.identity import process_instance_id

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
    # Names the transactional producer (with group_id): stable across restarts, unique per live
    # joiner. Default: the host name (the pod name on Kubernetes).
    instance_id: str = field(default_factory=process_instance_id)   # see WorkerSettings.instance_id
    instances: int = 1                         # processes `flywheel up` runs as one group (<id>-1..N)
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
        numeric=prediction.numeric, categorical=prediction.categorical,   # shared, never mutated
        predicted_label=prediction.label, predicted_value=prediction.value, scores=prediction.scores,
        confidence=prediction.confidence, true_label=label.label, true_value=label.value, flags=flags)


class Join:
    def __init__(self, store: FeatureStore, settings: JoinerSettings):
        self.store = store
        self.settings = settings

    def add(self, predictions: list[PredictionRecord], labels: list[Label] = (),
            given_up: list[Label] = ()) -> JoinResult:
        """One consumed batch against the store: one read of the stored predictions (for its labels
        and replays) and of the pending labels that can matter, then one batch of writes (its
        predictions, its feedback with their label counts, pending labels parked and removed). In
        order, as if one at a time: the predictions meet labels that waited for them; the labels
        meet stored predictions and the batch's (those without one wait in the store); `given_up`
        labels, whose wait is over, meet them too or come back unknown, their pending rows removed."""
        prediction_ids = {p.request_id for p in predictions}
        label_ids = {lb.request_id for lb in (*labels, *given_up)}
        if not prediction_ids | label_ids:
            return JoinResult()
        # Stored predictions are needed by labels and by replays (not by a live prediction, which
        # replaces whatever is stored): on Cassandra every id read is a statement.
        stored = self.store.get_predictions(sorted(label_ids | {p.request_id for p in predictions if p.replay}))
        predictions = self._without_replays_of_live(predictions, stored)
        found = stored    # read for this batch alone: updated in place
        for p in predictions:     # this batch's replace stored ones with the same key
            found[p.request_id] = [q for q in found.get(p.request_id, []) if q.model_version != p.model_version
                                   or q.model != p.model] + [p]
        # A pending label matters to a prediction (it waited for it), to a label that finds no
        # prediction (it replaces the waiting one) and to a label given up on; a label that finds
        # its prediction, as most do, needs no read of the pending labels.
        unmatched = {lb.request_id for lb in labels
                     if not any(label_matches(lb, p) for p in found.get(lb.request_id, ()))}
        pending_ids = sorted(prediction_ids | unmatched | {lb.request_id for lb in given_up})
        pending = {rid: Label.from_pending(p) for rid, p in self.store.get_pending(pending_ids).items()}
        result, parked, unparked = JoinResult(), {}, set()
        fresh: dict[str, list[PredictionRecord]] = {}
        for p in predictions:
            if p.request_id in pending:
                fresh.setdefault(p.request_id, []).append(p)
        for request_id, preds in fresh.items():
            self._pair(pending.pop(request_id), preds, result)
            unparked.add(request_id)
        for label in labels:      # in order: the store counts a second label for a request
            preds = [p for p in found.get(label.request_id, []) if label_matches(label, p)]
            if preds:
                self._pair(label, preds, result)
            else:
                if label.request_id in parked and parked[label.request_id] != label:
                    result.replaced_pending.append(label)
                parked[label.request_id] = label
        result.waiting = list(parked.values())
        result.replaced_pending += [lb for lb in result.waiting if lb.request_id in pending
                                    and pending[lb.request_id] != lb]
        pending.update(parked)
        unparked -= set(parked)
        for label in given_up:
            preds = [p for p in found.get(label.request_id, []) if label_matches(label, p)]
            if preds:
                self._pair(label, preds, result)
            else:
                result.unknown.append(label)
            if pending.get(label.request_id) == label:   # unless a newer label replaced it meanwhile
                del pending[label.request_id]
                parked.pop(label.request_id, None)
                unparked.add(label.request_id)
        with self.store.batch():
            self.store.put_predictions(predictions, ttl_s=self.settings.prediction_ttl_s)
            self._store_feedback(result)
            self.store.put_pending([lb.pending() for lb in parked.values()], ttl_s=int(self.settings.join_window_seconds))
            self.store.delete_pending(sorted(unparked))
        return result

    def add_predictions(self, predictions: list[PredictionRecord]) -> JoinResult:
        """Store predictions, then join any labels that were waiting for them."""
        return self.add(predictions)

    def add_labels(self, labels: list[Label], park: bool = True) -> JoinResult:
        """Join labels with their stored predictions. Those without one wait in the store
        (`park`), or, when their wait is over (`park=False`), are returned as unknown and their
        pending rows removed. Labels count in order, within a batch as across batches."""
        return self.add([], labels) if park else self.add([], [], labels)

    def _pair(self, label: Label, predictions: list[PredictionRecord], result: JoinResult) -> None:
        # A classifier's prediction scores every class it knows: a label that is not one of them
        # is not truth for this model (the model's manifest labels are exactly those keys).
        classes = set().union(*(p.scores for p in predictions)) if label.label is not None else ()
        if classes and label.label not in classes:
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
        replays = [(f.request_id, f.model, f.model_version, f.event_time) for f in result.feedback if REPLAY_FLAG in f.flags]
        if replays:
            live = {key for key, f in self.store.get_feedback(replays).items() if REPLAY_FLAG not in f.flags}
            result.feedback = [f for f in result.feedback if not (REPLAY_FLAG in f.flags and f.key in live)]
        if result.feedback:
            result.feedback = self.store.put_feedback(result.feedback)

    # Replays never overwrite live rows: the store keys rows by (request, model, version) only, and
    # its readers (retrainer, backtest, rollout) must keep every live example. A replay of a request
    # that live traffic already answered or labelled changes nothing; live traffic after a replay
    # replaces the replay's rows.

    def _without_replays_of_live(self, predictions: list[PredictionRecord],
                                 stored: dict[str, list[PredictionRecord]]) -> list[PredictionRecord]:
        if not any(p.replay for p in predictions):
            return predictions
        live = {(p.request_id, p.model, p.model_version) for ps in stored.values() for p in ps if not p.replay}
        return [p for p in predictions if not (p.replay and (p.request_id, p.model, p.model_version) in live)]


def label_matches(label: Label, prediction: PredictionRecord) -> bool:
    return label.model in (None, prediction.model)
