"""The review queue in the console's memory: items waiting, claims with a lease, and which requests
a person has already reviewed. The topics are the durable part (every item is on `review`, every
verdict on `labels` with source `review`), so a restarted console rebuilds this from them and loses
nothing; only unexpired claims are forgotten, and those items simply wait again.

One console process serves every reviewer, so a claim here is enough to keep two reviewers off one
item. Thread-safe: the web server answers each request on its own thread."""
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flywheel.processors.worker.outputs import RATIONED

HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Item:
    """One ReviewItem as a reviewer sees it: the features are only those the version's spec declares."""
    request_id: str
    model: str
    version: str
    reasons: tuple[str, ...]
    label: str | None
    value: float | None
    confidence: float | None
    features: tuple[tuple[str, object], ...]
    created_at: int
    choices: tuple[str, ...] = ()           # the classifier's labels (what a correction may say)

    @property
    def fault(self) -> bool:
        """A failed output check (always reviewed), not a judgement call rationed by the budget."""
        return not RATIONED.issuperset(self.reasons)

    def order(self) -> tuple:
        """Faults first, then the least confident, then the oldest."""
        confidence = self.confidence if self.confidence is not None else -1.0
        return (not self.fault, confidence, self.created_at)


@dataclass
class Claim:
    reviewer: str
    until: int


@dataclass
class QueueStats:
    waiting: int                     # not reviewed, not claimed
    claimed: int
    reviewed: int                    # verdicts seen on the labels topic
    reviewed_last_hour: int
    by_model: dict[str, int] = field(default_factory=dict)     # waiting + claimed, per model

    @property
    def depth(self) -> int:
        return self.waiting + self.claimed


class ReviewQueue:
    def __init__(self, lease_ms: int, clock: Callable[[], int] = now_ms):
        self.lease_ms = lease_ms
        self.clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, Item] = {}
        self._claims: dict[str, Claim] = {}
        self._reviewed: dict[str, int] = {}          # request id -> labelled_at

    def add(self, item: Item) -> None:
        with self._lock:
            if item.request_id not in self._reviewed:
                self._items[item.request_id] = item

    def reviewed(self, request_id: str, at: int) -> None:
        """A verdict exists (ours or another console's): the item leaves the queue for good."""
        with self._lock:
            self._reviewed[request_id] = at
            self._items.pop(request_id, None)
            self._claims.pop(request_id, None)

    def claim(self, reviewer: str) -> Item | None:
        """The reviewer's current item if they hold one, else the first free item, now theirs."""
        with self._lock:
            now = self.clock()
            held = [rid for rid, c in self._claims.items() if c.reviewer == reviewer and c.until > now]
            if held:
                self._claims[held[0]].until = now + self.lease_ms
                return self._items[held[0]]
            free = [i for i in self._items.values() if not self._held(i.request_id, now)]
            if not free:
                return None
            item = min(free, key=Item.order)
            self._claims[item.request_id] = Claim(reviewer, now + self.lease_ms)
            return item

    def holds(self, reviewer: str, request_id: str) -> Item | None:
        """The item, if this reviewer's claim on it is still valid."""
        with self._lock:
            c = self._claims.get(request_id)
            if c is None or c.reviewer != reviewer or c.until <= self.clock():
                return None
            return self._items.get(request_id)

    def release(self, reviewer: str, request_id: str) -> None:
        """Skip: the item goes back to the queue for someone else."""
        with self._lock:
            c = self._claims.get(request_id)
            if c is not None and c.reviewer == reviewer:
                del self._claims[request_id]

    def stats(self) -> QueueStats:
        with self._lock:
            now = self.clock()
            claimed = sum(1 for rid in self._items if self._held(rid, now))
            by_model: dict[str, int] = {}
            for item in self._items.values():
                by_model[item.model] = by_model.get(item.model, 0) + 1
            recent = sum(1 for at in self._reviewed.values() if at > now - HOUR_MS)
            return QueueStats(len(self._items) - claimed, claimed, len(self._reviewed), recent, by_model)

    def _held(self, request_id: str, now: int) -> bool:
        c = self._claims.get(request_id)
        return c is not None and c.until > now
