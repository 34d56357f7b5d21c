"""The kill rotation's window check (tests/soak_windows.py) on figures made by hand: what it must
accept (equal windows, a record folded forward and counted late, a duplicated request's feedback
copy) and what it must refuse (a record counted twice, one lost)."""
from collections import Counter

from tests.soak_windows import Recount, Stored, differences

V = ("churn", "v1")


def windows(figures: list[int]) -> Counter:
    """One figure per 10 s window, in order."""
    return Counter({(*V, 10_000 * i): n for i, n in enumerate(figures)})


def stored(rows, labelled=None, late=None) -> Stored:
    labelled = labelled or [0] * len(rows)
    return Stored(windows(rows), windows(labelled), windows(labelled), windows(late or [0] * len(rows)))


def recount(rows, labelled=None, extra=None) -> Recount:
    labelled = labelled or [0] * len(rows)
    return Recount(windows(rows), windows(labelled), windows(labelled), windows(extra or [0] * len(rows)))


def test_equal_windows_pass():
    assert differences(stored([5, 7, 3], [4, 6, 2]), recount([5, 7, 3], [4, 6, 2])) == []


def test_a_record_folded_forward_and_counted_late_passes():
    assert differences(stored([4, 8, 3], late=[0, 1, 0]), recount([5, 7, 3])) == []


def test_a_record_counted_twice_is_found():
    problems = differences(stored([5, 8, 3]), recount([5, 7, 3]))
    assert len(problems) == 2 and "window 10000 rows: stored 8, recounted 7" in problems[0]


def test_a_lost_record_is_found_even_when_a_later_window_is_late():
    # The late record in the last window explains one missing record, not two.
    assert differences(stored([3, 7, 4], late=[0, 0, 1]), recount([5, 7, 3])) != []
    assert differences(stored([5, 7, 2]), recount([5, 7, 3])) != []


def test_a_feedback_copy_counts_only_where_the_raw_reader_found_one():
    assert differences(stored([5, 7], [4, 7]), recount([5, 7], [4, 6], extra=[0, 1])) == []
    assert differences(stored([5, 7], [4, 7]), recount([5, 7], [4, 6])) != []
