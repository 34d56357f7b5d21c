"""The labels a joiner holds while they wait for their predictions, with the message each came in
(its offset keeps the partition's commit back) and when the wait ends.

Each batch asks which holds are due and, per partition, the oldest held offset. Both are
answered from heaps, not by walking every hold: a backlog of held labels (a worker that is down
while labels keep coming) must not slow every batch in proportion. Entries a hold leaves behind
when it ends or its deadline moves are skipped when they surface, and the heaps are rebuilt once
they hold twice as many entries as there are holds, so memory stays proportional to the holds.

The holds have a bound (`HoldBound`: a count and bytes). Before each batch, `over` gives up the
holds nearest their deadline (every wait is the same length, so the oldest) until the batch's
labels fit: the caller gives them up like those whose wait is over, as dead letters, and the
partition's committed offset moves past them.
"""
import heapq
import itertools
from dataclasses import dataclass

from confluent_kafka import Message
from flywheel.processors.joiner.join import Label
from flywheel.processors.joiner.settings import HoldBound

_SLACK = 1024    # stale heap entries tolerated beyond twice the holds before a rebuild
# What a hold keeps besides its message's key and value: the Hold, its Label and the join's Held,
# their strings, the Message object, and the dict and heap entries that find it: 1,043 bytes
# measured with tracemalloc over 20,000 holds (benchmarks/bench_burst.py, docs/operating/bounds.md).
HOLD_OVERHEAD_BYTES = 1050


@dataclass
class Hold:
    label: Label
    message: Message
    deadline: float          # time.monotonic()

    @property
    def partition(self) -> tuple[str, int]:
        return self.message.topic(), self.message.partition()

    @property
    def size(self) -> int:
        """Bytes this hold keeps in memory (HOLD_OVERHEAD_BYTES is measured, the rest is exact)."""
        return message_size(self.message)


def message_size(message: Message) -> int:
    """Bytes a label held with this message keeps in memory."""
    return HOLD_OVERHEAD_BYTES + len(message.value() or b"") + len(message.key() or b"")


class Holds:
    def __init__(self):
        self._by_id: dict[str, Hold] = {}
        self._seq = itertools.count()    # ties in a heap never compare holds
        self._deadlines: list[tuple[float, int, str]] = []
        self._offsets: dict[tuple[str, int], list[tuple[int, str]]] = {}
        self._offset_entries = 0    # in all of _offsets' heaps
        self.bytes = 0              # the holds' sizes, summed

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._by_id

    def get(self, request_id: str) -> Hold | None:
        return self._by_id.get(request_id)

    def put(self, hold: Hold) -> None:
        """Hold a label (in place of any earlier hold of its request)."""
        rid = hold.label.request_id
        self._forget(self._by_id.get(rid))
        self._by_id[rid] = hold
        self.bytes += hold.size
        heapq.heappush(self._deadlines, (hold.deadline, next(self._seq), rid))
        heapq.heappush(self._offsets.setdefault(hold.partition, []), (hold.message.offset(), rid))
        self._offset_entries += 1
        self._compact()

    def shorten(self, label: Label, deadline: float) -> None:
        """End the hold of this label (if it is still the one held) by `deadline` at the latest."""
        hold = self._by_id.get(label.request_id)
        if hold is not None and hold.label == label and deadline < hold.deadline:
            hold.deadline = deadline
            heapq.heappush(self._deadlines, (deadline, next(self._seq), label.request_id))

    def pop(self, request_id: str) -> Hold | None:
        return self._forget(self._by_id.pop(request_id, None))

    def due(self, now: float) -> list[Hold]:
        """Remove and return the holds whose wait is over, oldest deadline first."""
        out = []
        while self._deadlines and self._deadlines[0][0] <= now:
            self._pop_earliest(out)
        return out

    def over(self, bound: HoldBound, labels: int, nbytes: int) -> list[Hold]:
        """Remove and return the holds nearest their deadline until `labels` more holds of
        `nbytes` in all fit within the bound."""
        out = []
        while self._deadlines and (len(self) + labels > bound.labels or self.bytes + nbytes > bound.bytes):
            self._pop_earliest(out)
        return out

    def _pop_earliest(self, out: list[Hold]) -> None:
        deadline, _, rid = heapq.heappop(self._deadlines)
        hold = self._by_id.get(rid)
        if hold is not None and hold.deadline == deadline:
            out.append(self.pop(rid))

    def _forget(self, hold: Hold | None) -> Hold | None:
        if hold is not None:
            self.bytes -= hold.size
        return hold

    def oldest_offsets(self) -> dict[tuple[str, int], int]:
        """Per partition with a hold: the offset of its oldest held label's message."""
        out = {}
        for key, heap in list(self._offsets.items()):
            while heap and not self._holds_offset(heap[0], key):
                heapq.heappop(heap)
                self._offset_entries -= 1
            if heap:
                out[key] = heap[0][0]
            else:
                del self._offsets[key]
        return out

    def drop_partitions(self, gone: set[tuple[str, int]]) -> list[str]:
        """End every hold of these partitions (they went to another joiner); their request ids."""
        dropped = [rid for rid, hold in self._by_id.items() if hold.partition in gone]
        for rid in dropped:
            self.pop(rid)
        for key in gone:
            self._offset_entries -= len(self._offsets.pop(key, ()))
        return dropped

    def _holds_offset(self, entry: tuple[int, str], key: tuple[str, int]) -> bool:
        hold = self._by_id.get(entry[1])
        return hold is not None and hold.partition == key and hold.message.offset() == entry[0]

    def _compact(self) -> None:
        limit = 2 * len(self._by_id) + _SLACK
        if len(self._deadlines) <= limit and self._offset_entries <= limit:
            return
        self._deadlines = [(h.deadline, next(self._seq), rid) for rid, h in self._by_id.items()]
        heapq.heapify(self._deadlines)
        self._offsets = {}
        for rid, hold in self._by_id.items():
            self._offsets.setdefault(hold.partition, []).append((hold.message.offset(), rid))
        for heap in self._offsets.values():
            heapq.heapify(heap)
        self._offset_entries = len(self._by_id)
