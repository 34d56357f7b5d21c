"""Sequential change detection on a live version's labelled error stream.

A pure concept drift (P(y|x) changes, P(x) does not) is invisible to feature drift; only the labels
show it. Each live version's labelled feedback, in the order the labels arrived, is fed as an error
stream (classifier: 1 if the prediction was wrong, else 0; regressor: the absolute error) to ADWIN
(Bifet & Gavaldà, "Learning from time-changing data with adaptive windowing", SDM 2007; river's
implementation). ADWIN keeps the longest recent window whose mean shows no change and cuts it where
two sub-windows differ by more than its Hoeffding-style bound at confidence `delta`: a change of
the error rate by ε is found within O(log(1/delta) / ε²) labels. Where the change began is then
estimated within ADWIN's window as the least-squares single change point.

Only a rise of the error counts (a version getting better is no reason to retrain). The latest
change is held; the policy acts on it once, when it was found after the model's last request
(which the store keeps). The trigger feeds each label once, as the `feedback` topic brings it;
after a restart, or when a version becomes live, the stream is rebuilt from the version's stored
feedback over the lookback in label order, which arrives at the same place. A record the joiner
emits twice (after its own restart) is fed twice. Memory is bounded: ADWIN's buckets grow with
the log of its window, and the window a change is dated in holds at most DATING_WINDOW labels.
"""
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
from flywheel.feature_store import FeedbackRecord
from river.drift import ADWIN

DATING_WINDOW = 100_000     # latest labels a change is dated among (ADWIN's own window may be longer)


@dataclass(frozen=True)
class ChangePoint:
    """A rise of a version's error rate that ADWIN found."""
    detected_at: int          # labelled_at of the label on which it was found (ms)
    since: int                # event time of the first example after the estimated cut (ms)
    labels: int               # labelled examples after the cut, so far
    error_before: float
    error_after: float


@dataclass
class ErrorStream:
    """One model version's errors, in label order, through ADWIN."""
    delta: float
    adwin: ADWIN = field(init=False)
    # (event time, error) of the latest examples in ADWIN's window, where a change is dated
    window: deque = field(default_factory=lambda: deque(maxlen=DATING_WINDOW))
    change: ChangePoint | None = None

    def __post_init__(self):
        self.adwin = ADWIN(delta=self.delta)

    def feed(self, records: list[FeedbackRecord]) -> ChangePoint | None:
        """Feed new labelled records, in the order their labels arrived; return the latest change."""
        for r in records:
            if error(r) is not None:
                self._update(r)
        return self.change

    def _update(self, record: FeedbackRecord) -> None:
        x = error(record)
        if self.adwin.drift_detected:          # river's ADWIN starts afresh on the update after a cut
            self.window.clear()
        self.adwin.update(x)
        self.window.append((record.event_time, x))     # one per example in ADWIN's window
        if self.adwin.drift_detected:
            change = _change_point(self.window, record.labelled_at)
            if change is not None:
                self.change = change
                return
        if self.change is not None:
            self.change = replace(self.change, labels=self.change.labels + 1)


@dataclass
class ErrorStreams:
    """An ErrorStream per (model, version); a version no longer live is dropped with its stream."""
    delta: float
    streams: dict[tuple[str, str], ErrorStream] = field(default_factory=dict)

    def observe(self, model: str, version: str, records: list[FeedbackRecord]) -> ChangePoint | None:
        """Feed the version's new records (in label order; a new live version starts afresh)."""
        for key in [k for k in self.streams if k[0] == model and k[1] != version]:
            del self.streams[key]
        stream = self.streams.setdefault((model, version), ErrorStream(self.delta))
        return stream.feed(records)


def _change_point(window: deque, detected_at: int) -> ChangePoint | None:
    """Where in ADWIN's window the mean most likely shifted (the least-squares single change point,
    Hinkley 1970): ADWIN's own cut drops whole buckets and can leave much of the old concept in.
    None when the shift is a fall of the error."""
    times, x = zip(*window)
    x = np.asarray(x, dtype=float)
    n = len(x)
    k = np.arange(1, n)
    head = np.cumsum(x)[:-1]
    before, after = head / k, (x.sum() - head) / (n - k)
    split = int(np.argmax(k * (n - k) / n * (after - before) ** 2))
    if after[split] <= before[split]:
        return None
    return ChangePoint(detected_at, times[split + 1], n - split - 1, float(before[split]), float(after[split]))


def in_label_order(records: list[FeedbackRecord]) -> list[FeedbackRecord]:
    return sorted(records, key=lambda r: (r.labelled_at, r.request_id))


def error(record: FeedbackRecord) -> float | None:
    if record.true_label is not None and record.predicted_label is not None:
        return float(record.true_label != record.predicted_label)
    if record.true_value is not None and record.predicted_value is not None:
        return abs(record.predicted_value - record.true_value)
    return None
