"""Offsets already counted (processors/monitor/counted.py): runs behave as the sets of offsets
they stand for, and a partition's counted runs are stored from its last commit on."""
import numpy as np
from flywheel.processors.monitor.counted import Counted, Runs
from hypothesis import given
from hypothesis import strategies as st

offsets = st.sets(st.integers(0, 300), max_size=80)


def as_set(runs: Runs) -> set[int]:
    return {o for s, e in zip(runs.starts.tolist(), runs.ends.tolist()) for o in range(s, e)}


@given(offsets, offsets, st.integers(0, 320))
def test_runs_are_the_sets_of_offsets_they_stand_for(a, b, floor):
    ra, rb = Runs.of(np.array(sorted(a), dtype=np.int64)), Runs.of(np.array(sorted(b), dtype=np.int64))
    assert as_set(ra) == a and len(ra) == len(a)
    union = ra.union(rb)
    assert as_set(union) == a | b
    assert (union.starts[1:] > union.ends[:-1]).all()       # disjoint and never touching
    assert as_set(union.since(floor)) == {o for o in a | b if o >= floor}
    probe = np.arange(0, 320, dtype=np.int64)
    assert union.contains(probe).tolist() == [o in a | b for o in probe.tolist()]
    assert as_set(Runs.from_bytes(union.to_bytes())) == a | b


def test_a_partition_s_runs_are_stored_from_its_last_commit_and_loaded_by_the_next_reader():
    tp = ("t.feedback", 0)
    counted = Counted("g")
    changed = counted.add({tp: Runs.of(np.r_[0:100, 101:121])})
    [row] = counted.rows(changed, lambda t, p: f"{t}:{p}", now=5)
    assert as_set(Runs.from_bytes(row.runs)) == set(range(100)) | set(range(101, 121))   # nothing committed yet
    counted.committed({tp: 100})
    [row] = counted.rows([], lambda t, p: f"{t}:{p}", now=6)       # pruned below the commit, rewritten
    assert as_set(Runs.from_bytes(row.runs)) == set(range(101, 121))

    successor = Counted("g")
    assert successor.unloaded({tp}) == [tp]
    successor.load([row], [tp], lambda t, p: f"{t}:{p}")
    assert successor.unloaded({tp}) == []
    skip = successor.skip([tp], np.zeros(22, dtype=np.int64), np.arange(100, 122))
    assert np.flatnonzero(~skip).tolist() == [0, 21]                # offsets 100 and 121: never counted
