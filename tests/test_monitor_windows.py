"""Tumbling windows: closing by clock and grace, late records folded forward, feedback kept once per
request, and the offsets that may be committed while windows are open."""
from processors.monitor.windows import WindowedMonitor

W = 1000


def pred(t: int, version: str = "1") -> dict:
    return {"request_id": f"p{t}", "model": "m", "model_version": version, "predicted_at": t,
            "numeric": {"x": 1.0}, "label": "a", "confidence": 0.9}


def fb(request_id: str, labelled_at: int, true_label: str) -> dict:
    return {"request_id": request_id, "model": "m", "model_version": "1", "labelled_at": labelled_at,
            "predicted_label": "a", "true_label": true_label, "confidence": 0.9, "scores": {}}


def test_windows_close_after_grace_per_version_and_late_records_fold_forward():
    monitor = WindowedMonitor(W, 200, lambda m, v: None)
    monitor.add_predictions([pred(10), pred(990), pred(1500), pred(20, "2")])
    assert monitor.close_due(W + 199) == []
    closed = monitor.close_due(W + 200)
    assert sorted((r.version, r.start_ms, r.rows) for r in closed) == [("1", 0, 2), ("2", 0, 1)]
    assert not closed[0].has_reference and closed[0].drift == []
    monitor.add_predictions([pred(500)])                 # its window is closed: counted late, kept
    [late] = monitor.close_due(2 * W + 200)
    assert (late.start_ms, late.rows, late.late) == (W, 2, 1)


def test_feedback_is_kept_once_per_request_and_a_later_label_replaces():
    monitor = WindowedMonitor(W, 0, lambda m, v: None)
    monitor.add_feedback([fb("r1", 100, "b"), fb("r1", 100, "b"), fb("r2", 200, "a")])
    monitor.add_feedback([fb("r1", 300, "a")])           # redelivered, then corrected
    [result] = monitor.close_due(W)
    assert result.labelled == 2 and result.performance.metrics["accuracy"] == 1.0


def test_safe_offsets_hold_the_first_record_of_open_windows():
    monitor = WindowedMonitor(W, 0, lambda m, v: None)
    monitor.add_predictions([pred(10), pred(1500)], [("t", 0, 7), ("t", 0, 8)])
    monitor.add_feedback([fb("r", 20, "a")], [("f", 1, 3)])
    assert monitor.safe_offsets() == {("t", 0): 7, ("f", 1): 3}
    monitor.close_due(W)
    assert monitor.safe_offsets() == {("t", 0): 8}
    monitor.close_due(2 * W)
    assert monitor.safe_offsets() == {} and monitor.open_windows == 0


def test_a_record_before_1970_for_a_version_with_no_closed_window_is_not_a_crash():
    """Issue 12, item 2: a negative labelled_at raised KeyError (no closed window yet for the
    version) on every restart. It opens its own window, which closes like any other."""
    monitor = WindowedMonitor(W, 200, lambda m, v: None)
    monitor.add_feedback([fb("r1", -5000, "a")])
    [closed] = monitor.close_due(0)
    assert (closed.start_ms, closed.labelled) == (-5000, 1)


def test_closed_windows_are_read_from_the_store_so_a_restart_cannot_reopen_them():
    stored = {("m", "1"): 2 * W}
    monitor = WindowedMonitor(W, 200, lambda m, v: None, closed=lambda m, v: stored.get((m, v)))
    monitor.add_feedback([fb("late", W + 10, "b"), fb("new", 2 * W + 10, "a")])
    [window] = monitor.close_due(3 * W + 200)
    assert (window.start_ms, window.labelled, window.late) == (2 * W, 2, 1)
