"""The join of predictions with ground truth, against the store (no Kafka here).

Predictions are stored by request id (every version's: live, canary and shadow answers are each
joined, so each version is scored on the same truth). A label finds its predictions in the store
and becomes one FeedbackRecord per version. A label that finds none comes early: it is held here,
in memory, and every prediction of its request that comes while it is held, of any version and
in any later batch, is joined with it; a later label of the request takes its place. The caller
decides when a hold ends (`early_label_wait_seconds`, or `held_after_join_seconds` once the
label has met a prediction: `JoinResult.met`) and passes the label back as given up: a label
that never met a prediction is then for an unknown request. A label whose prediction is
older than the join window is late. Both are the caller's to dead-letter. Every store write is an
upsert by key, so processing the same records again changes nothing; a different label for a
joined request replaces the first and the store counts it (label_count).

Held labels are not stored: the joiner's committed offset never passes a held label, so after a
restart or a rebalance the label is read again and meets the predictions stored meanwhile. A
label that comes before a prediction of its request (labelled before it was predicted) is held
on for the request's other versions once it has met one, whether it met it while held or in the
store: so a label read again after a restart, which finds in the store the version it had met
before, is held for the versions still to come as it was before the restart. What a restart
changes is the wait: it starts again from when the label is read again (a hold is made longer by
a restart, never shorter; the wait is measured on the joiner's reading, so a backlog of labels
read late is not given up before the predictions behind them are read).
"""
from dataclasses import dataclass, field

from flywheel.feature_store import FeatureStore, FeedbackRecord, PredictionRecord
from flywheel.processors.joiner.settings import JoinerSettings

REPLAY_FLAG = "replay"


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


@dataclass(frozen=True)
class Held:
    """A label that came before any prediction of its request, and whether one has met it since."""
    label: Label
    met: bool = False


@dataclass
class JoinResult:
    feedback: list[FeedbackRecord] = field(default_factory=list)   # as stored (label_count set)
    late: list[tuple[Label, PredictionRecord]] = field(default_factory=list)
    refused: list[tuple[Label, str, str]] = field(default_factory=list)   # (label, reason, detail)
    held: list[Label] = field(default_factory=list)                 # now held for their requests' predictions
    met: list[Label] = field(default_factory=list)                  # held labels that met a prediction now
    unknown: list[Label] = field(default_factory=list)              # given up on: no prediction met them
    replaced_held: list[Label] = field(default_factory=list)        # replaced a different held label


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
        self.held: dict[str, Held] = {}     # by request id

    def add(self, predictions: list[PredictionRecord], labels: list[Label] = (),
            given_up: list[Label] = ()) -> JoinResult:
        """One consumed batch against the store: one read of the stored predictions (for its labels
        and replays), then one batch of writes (its predictions, its feedback with their label
        counts). In order, as if one at a time: the predictions meet the labels held for them; the
        labels meet stored predictions and the batch's (those that find none are held); `given_up`
        labels that never met a prediction come back unknown. The holds change only once the store
        has taken the batch, so a call that raises can be made again; a given-up label stays held
        until `release`."""
        if not (predictions or labels or given_up):
            return JoinResult()
        # Stored predictions are needed by labels and by replays (not by a live prediction, which
        # replaces whatever is stored): on Cassandra every id read is a statement.
        ids = {lb.request_id for lb in labels} | {p.request_id for p in predictions if p.replay}
        stored = self.store.get_predictions(sorted(ids)) if ids else {}
        predictions = self._without_replays_of_live(predictions, stored)
        found = stored    # read for this batch alone: updated in place
        for p in predictions:     # this batch's replace stored ones with the same key
            found[p.request_id] = [q for q in found.get(p.request_id, []) if q.model_version != p.model_version
                                   or q.model != p.model] + [p]
        result = JoinResult()
        # The holds of the batch's requests, changed here and kept once the store has the batch.
        held = {r.request_id: self.held.get(r.request_id) for r in (*predictions, *labels)}
        self._meet_held(predictions, held, result)
        for label in labels:      # in order: the store counts a second label for a request
            self._meet_stored(label, [p for p in found.get(label.request_id, []) if label_matches(label, p)],
                              held, result)
        result.unknown = [lb for lb in given_up
                          if (h := held.get(lb.request_id, self.held.get(lb.request_id))) is not None
                          and h.label == lb and not h.met]
        with self.store.batch():
            self.store.put_predictions(predictions, ttl_s=self.settings.prediction_ttl_s)
            self._store_feedback(result)
        for rid, h in held.items():
            if h is None:
                self.held.pop(rid, None)
            else:
                self.held[rid] = h
        return result

    def release(self, given_up: list[Label]) -> None:
        """End the holds of labels given up on (unless a later label replaced them meanwhile)."""
        for label in given_up:
            if (h := self.held.get(label.request_id)) is not None and h.label == label:
                del self.held[label.request_id]

    def forget(self, request_ids) -> None:
        """Drop the holds of requests whose partitions went to another joiner (it reads them again)."""
        for rid in request_ids:
            self.held.pop(rid, None)

    def _meet_held(self, predictions: list[PredictionRecord], held: dict[str, Held | None],
                   result: JoinResult) -> None:
        fresh: dict[str, list[PredictionRecord]] = {}
        for p in predictions:
            if held.get(p.request_id) is not None:
                fresh.setdefault(p.request_id, []).append(p)
        for rid, preds in fresh.items():
            label = held[rid].label
            if self._pair(label, preds, result):
                held[rid] = Held(label, met=True)
                result.met.append(label)
            else:
                held[rid] = None

    def _meet_stored(self, label: Label, preds: list[PredictionRecord], held: dict[str, Held | None],
                     result: JoinResult) -> None:
        before = held[label.request_id]
        if preds:
            came_first = any(p.predicted_at > label.labelled_at for p in preds)
            if self._pair(label, preds, result) and (before is not None or came_first):
                # It takes the held label's place, or came before a version: others may follow.
                held[label.request_id] = Held(label, met=True)
                result.held.append(label)
                result.met.append(label)
            return
        if before is not None and before.label != label:
            result.replaced_held.append(label)
        held[label.request_id] = Held(label, met=before is not None and before.label == label and before.met)
        result.held.append(label)

    def add_predictions(self, predictions: list[PredictionRecord]) -> JoinResult:
        """Store predictions, then join any labels held for them."""
        return self.add(predictions)

    def add_labels(self, labels: list[Label]) -> JoinResult:
        """Join labels with their stored predictions; those without one are held. Labels count
        in order, within a batch as across batches."""
        return self.add([], labels)

    def _pair(self, label: Label, predictions: list[PredictionRecord], result: JoinResult) -> bool:
        """Join a label with predictions of its request; False if it is refused as their truth."""
        # A classifier's prediction scores every class it knows: a label that is not one of them
        # is not truth for this model (the model's manifest labels are exactly those keys).
        classes = set().union(*(p.scores for p in predictions)) if label.label is not None else ()
        if classes and label.label not in classes:
            result.refused.append((label, "unknown_class", f"label {label.label[:100]!r} is not one of the model's "
                                                           f"classes {sorted(classes)}"))
            return False
        # A class for a regressor or a number for a classifier is not truth for it either (and a
        # label can then add no more to a FeedbackRecord than a class name the Prediction holds).
        classifier = any(p.label is not None or p.scores for p in predictions)
        regressor = any(p.value is not None for p in predictions)
        if (label.label is not None and regressor and not classifier) or \
                (label.value is not None and classifier and not regressor):
            result.refused.append((label, "wrong_label_kind",
                                   f"a {'class' if label.label is not None else 'value'} label for a "
                                   f"{'regressor' if regressor else 'classifier'}"))
            return False
        for p in predictions:
            if label.labelled_at - p.predicted_at > self.settings.window_ms:
                result.late.append((label, p))
            else:
                result.feedback.append(feedback_record(p, label))
        return True

    def _store_feedback(self, result: JoinResult) -> None:
        replays = [(f.request_id, f.model, f.model_version, f.event_time)
                   for f in result.feedback if REPLAY_FLAG in f.flags]
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
