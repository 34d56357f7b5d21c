"""The joiner's held labels: what is due and which offsets are held, against a plain dict that
walks every hold (what the joiner did before), for any sequence of operations; heaps that
stay proportional to the holds however many come and go; and a bound on their count and bytes."""
from dataclasses import dataclass

from flywheel.processors.joiner.holds import _SLACK, HOLD_OVERHEAD_BYTES, Hold, Holds
from flywheel.processors.joiner.join import Label
from flywheel.processors.joiner.settings import HoldBound
from hypothesis import given, settings
from hypothesis import strategies as st


@dataclass(frozen=True)
class Sent:
    """What the joiner reads of a consumed message: where it came from."""
    topic_name: str
    partition_id: int
    at: int
    payload: bytes = b"label"

    def value(self) -> bytes:
        return self.payload

    def key(self) -> bytes:
        return b"k"

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_id

    def offset(self) -> int:
        return self.at


def hold(rid: str, value: str, partition: int, offset: int, deadline: float, payload: bytes = b"label") -> Hold:
    return Hold(Label(rid, 0, "m", value), Sent("labels", partition, offset, payload), deadline)


ids = st.sampled_from(["r0", "r1", "r2", "r3", "r4"])
operation = st.one_of(
    st.tuples(st.just("put"), ids, st.sampled_from(["a", "b"]), st.integers(0, 2), st.integers(0, 50),
              st.integers(0, 20)),
    st.tuples(st.just("shorten"), ids, st.sampled_from(["a", "b"]), st.integers(0, 20)),
    st.tuples(st.just("pop"), ids),
    st.tuples(st.just("due"), st.integers(0, 20)),
    st.tuples(st.just("over"), st.integers(1, 5), st.integers(0, 2)),
    st.tuples(st.just("drop"), st.sets(st.integers(0, 2))))


def apply(holds: Holds, reference: dict[str, Hold], op: tuple) -> None:
    kind = op[0]
    if kind == "put":
        _, rid, value, partition, offset, deadline = op
        holds.put(hold(rid, value, partition, offset, deadline))
        reference[rid] = hold(rid, value, partition, offset, deadline)
    elif kind == "shorten":
        _, rid, value, deadline = op
        holds.shorten(Label(rid, 0, "m", value), deadline)
        h = reference.get(rid)
        if h is not None and h.label.label == value and deadline < h.deadline:
            h.deadline = deadline
    elif kind == "pop":
        assert (holds.pop(op[1]) is None) == (reference.pop(op[1], None) is None)
    elif kind == "due":
        expected = {rid for rid, h in reference.items() if h.deadline <= op[1]}
        got = holds.due(op[1])
        assert {h.label.request_id for h in got} == expected
        assert [h.deadline for h in got] == sorted(h.deadline for h in got)
        for rid in expected:
            del reference[rid]
    elif kind == "over":
        _, most, coming = op
        size = HOLD_OVERHEAD_BYTES + len(b"label") + len(b"k")
        got = holds.over(HoldBound(most, 10 * size), coming, coming * size)
        earliest = sorted(reference.values(), key=lambda h: h.deadline)
        expected = max(0, len(reference) + coming - most)
        assert len(got) == min(expected, len(reference))
        # The earliest deadlines (ties in any order) are given up.
        assert sorted(h.deadline for h in got) == [h.deadline for h in earliest[:len(got)]]
        for h in got:
            del reference[h.label.request_id]
    else:
        gone = {("labels", p) for p in op[1]}
        expected = {rid for rid, h in reference.items() if h.partition in gone}
        assert set(holds.drop_partitions(gone)) == expected
        for rid in expected:
            del reference[rid]


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=40))
def test_holds_answer_as_a_walk_over_every_hold_does(ops):
    holds, reference = Holds(), {}
    for op in ops:
        apply(holds, reference, op)
        oldest: dict[tuple[str, int], int] = {}
        for h in reference.values():
            oldest[h.partition] = min(oldest.get(h.partition, h.message.offset()), h.message.offset())
        assert holds.oldest_offsets() == oldest
        assert len(holds) == len(reference) and all(rid in holds for rid in reference)
        assert holds._offset_entries == sum(len(heap) for heap in holds._offsets.values())
        assert holds.bytes == sum(h.size for h in reference.values())


def test_heaps_stay_proportional_to_the_holds_behind_one_that_never_ends():
    """A label that never finds its prediction holds the oldest offset and the latest deadline
    while many others come and go: their entries must not pile up behind it."""
    holds = Holds()
    holds.put(hold("stuck", "a", 0, 0, deadline=1e9))
    for i in range(1, 20_000):
        holds.put(hold(f"r{i}", "a", 0, i, deadline=float(i)))
        holds.shorten(Label(f"r{i}", 0, "m", "a"), float(i) - 0.5)
        assert [h.label.request_id for h in holds.due(float(i))] == [f"r{i}"]
    assert holds.oldest_offsets() == {("labels", 0): 0} and len(holds) == 1
    assert len(holds._deadlines) <= 2 * len(holds) + _SLACK + 2
    assert sum(len(heap) for heap in holds._offsets.values()) <= 2 * len(holds) + _SLACK + 2


def test_the_oldest_holds_are_given_up_until_the_coming_labels_fit_in_count_and_bytes():
    holds = Holds()
    for i in range(10):
        holds.put(hold(f"r{i}", "a", i % 2, i, deadline=float(100 + i), payload=bytes(1000)))
    size = HOLD_OVERHEAD_BYTES + 1000 + 1
    assert holds.bytes == 10 * size
    assert holds.over(HoldBound(labels=12, bytes=100 * size), 2, 2 * size) == []     # room for 2 more
    assert [h.label.request_id for h in holds.over(HoldBound(labels=12, bytes=100 * size), 4, 0)] == ["r0", "r1"]
    # By bytes: room for one label of 5 KB within 8 holds' worth.
    given_up = holds.over(HoldBound(labels=100, bytes=8 * size), 1, 5000)
    assert [h.label.request_id for h in given_up] == ["r2", "r3", "r4"]
    assert len(holds) == 5 and holds.bytes == 5 * size and holds.bytes + 5000 <= 8 * size
    assert holds.oldest_offsets() == {("labels", 1): 5, ("labels", 0): 6}
