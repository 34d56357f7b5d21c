"""Tumbling windows: closing by clock and grace, late records folded forward, feedback kept once per
request, and the offsets that may be committed while windows are open."""
import numpy as np
from flywheel.processors.monitor.drift import DriftThresholds
from flywheel.processors.monitor.profile import Profile, build_reference
from flywheel.processors.monitor.windows import Offsets, WindowedMonitor
from flywheel.schemas import AvroSerde
from flywheel.schemas.features import Feature, FeatureSpec
from flywheel.schemas.wire.prediction import PredictionDecoder

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


def test_a_folded_window_counts_each_of_its_records_late_once():
    """A window closed here, open again with a late label (the group had merged only the window
    before it), then merged elsewhere: folded forward, its one record is one late record."""
    stored = {("m", "1"): W}
    monitor = WindowedMonitor(W, 0, lambda m, v: None, closed=lambda m, v: stored.get((m, v)))
    assert monitor.close(2 * W) == []                    # window W closed here (it had no record)
    monitor.add_feedback([fb("late", 10, "a")])          # late for window 0: into window W, open again
    stored[("m", "1")] = 2 * W                           # the group merged window W meanwhile
    assert monitor.close(2 * W) == []                    # folded into window 2W, still open
    [window] = monitor.close(3 * W)
    assert (window.start_ms, window.counts.performance().count, window.late) == (2 * W, 1, 1)


def test_columns_fill_windows_as_the_same_records_as_dicts_do(registry):
    """The columnar path (predictions decoded a batch at a time) gives every window what the dict
    path gives it: rows, late records, offsets held, and each feature's sketch and counts, with
    nulls, a second key layout, unlabelled and regression predictions, and a closed window."""
    spec = FeatureSpec((Feature("x", min=-1, max=1), Feature("y"), Feature("c", "categorical", categories=("a",))))
    reference = build_reference(spec, {"x": [0.0, 0.5], "y": [1.0, 2.0]}, {"c": ["a", "a"]}, [0.5, 0.5], ["a", "b"])
    serde = AvroSerde(registry, "Prediction")
    rng = np.random.default_rng(5)
    records = []
    for i in range(300):
        numeric = {"x": None if i % 7 == 0 else float(rng.normal()), "y": float(rng.normal())}
        if i % 5 == 0:
            numeric = {"z": 1.0, "x": 0.25}                         # another layout, no y
        records.append({"request_id": f"r{i}", "entity_id": "e", "model": "m", "model_version": "12"[i % 2],
                        "role": "LIVE", "event_time": 0, "predicted_at": 100 + 7 * i,
                        "label": None if i % 3 == 0 else "ab"[i % 2], "value": -1.0 if i % 3 == 0 else None,
                        "scores": {}, "confidence": 0.75, "flags": [], "numeric": numeric,
                        "categorical": {"c": [None, "a", "zz"][i % 3]} if i % 4 else {},
                        "feature_sources": {}, "inference_us": 0, "batch_size": 1})
    sources = [("t", i % 2, 1000 + i) for i in range(len(records))]
    decoded = PredictionDecoder(serde).decode([serde.encode(r) for r in records])
    assert len(decoded.columns) == len(records)

    def windows():
        return WindowedMonitor(W, 0, lambda m, v: reference, DriftThresholds(min_count=1),
                               closed=lambda m, v: W if v == "2" else None)

    by_dicts, by_columns = windows(), windows()
    by_dicts.add_predictions(records, sources)
    by_columns.add_prediction_columns(decoded.columns, Offsets.of_sources(sources))
    assert by_columns.safe_offsets() == by_dicts.safe_offsets() == {("t", 0): 1000, ("t", 1): 1001}
    # "z" is no feature of the reference: left out of the windows, its values counted.
    ignored = lambda w: sum(x.profile.ignored for ws in w._open.values() for x in ws.values())  # noqa: E731
    assert ignored(by_columns) == ignored(by_dicts) == sum("z" in r["numeric"] for r in records) > 0
    expected, got = by_dicts.close_due(10 * W), by_columns.close_due(10 * W)
    assert [(r.version, r.start_ms, r.rows, r.late) for r in got] == \
        [(r.version, r.start_ms, r.rows, r.late) for r in expected]
    assert sum(r.late for r in got) > 0
    for a, b in zip(expected, got):
        assert _summary(a) == _summary(b)
    figures = _summary(got[0])
    assert {("x", "missing_rate"), ("c", "unseen_category"), ("prediction.label", "psi"),
            ("prediction.score", "ks")} <= set(figures)
    assert not {feature for feature, _ in figures} - {"x", "y", "c", "prediction.label", "prediction.score", "_volume"}


def _summary(result) -> dict:
    return {(d.feature, k): v for d in result.drift for k, v in d.statistics.items()} | \
        {(q.feature, q.rule): q.value for q in result.quality}


def test_windows_close_by_event_time_and_a_quiet_partition_holds_nothing_back():
    """The watermark is the lowest over the partitions of the newest event time read, less the
    lateness: the clock alone closes nothing while a partition is read behind; a partition quiet
    for idle_ms stops holding windows open; a record dated ahead of the clock moves nothing."""
    monitor = WindowedMonitor(W, 100, lambda m, v: None, idle_ms=5 * W)
    monitor.add_predictions([pred(10), pred(1500)], [("t", 0, 1), ("t", 0, 2)])
    monitor.add_predictions([pred(400)], [("t", 1, 1)])
    assert monitor.close_due(10 * W) == []              # partition 1 is read as far as 400 only
    monitor.add_predictions([pred(1200)], [("t", 1, 2)])
    [first] = monitor.close_due(10 * W)                 # both past 1100: the window [0, 1000) closes
    assert (first.start_ms, first.rows) == (0, 2)
    monitor.add_predictions([pred(50_000)], [("t", 0, 3)])   # partition 0 runs ahead; 1 falls quiet
    assert monitor.close_due(10 * W + 4 * W) == []      # 1 still holds the watermark at 1100
    [second] = monitor.close_due(10 * W + 5 * W)        # quiet for idle_ms: 0 alone, capped by the clock
    assert (second.start_ms, second.rows) == (W, 2)
    assert monitor.watermark.at == 15 * W - 100
    monitor.add_predictions([pred(10**12)], [("t", 1, 3)])   # far ahead of the clock
    monitor.close_due(16 * W)
    assert monitor.watermark.at == 16 * W - 100 and monitor.open_windows == 2


def test_nothing_closes_before_a_first_record_or_idle_ms_and_the_watermark_never_goes_back():
    monitor = WindowedMonitor(W, 0, lambda m, v: None, idle_ms=5 * W)
    assert monitor.close_due(100 * W) == [] and monitor.watermark.at is None   # a backlog may be on its way
    monitor.add_predictions([pred(99 * W + 5)], [("t", 0, 1)])
    monitor.close_due(100 * W)
    assert monitor.watermark.at == 99 * W + 5
    monitor.add_predictions([pred(10)], [("t", 1, 1)])      # a partition far behind: windows closed stay closed
    [behind] = monitor.close_due(100 * W)
    assert monitor.watermark.at == 99 * W + 5 and (behind.start_ms, behind.rows) == (0, 1)


def test_open_windows_per_version_are_bounded_the_oldest_close_early():
    """A partition read far behind keeps the watermark low while the others fill windows up to
    the clock: past max_open a version's oldest windows close before the watermark reaches them."""
    monitor = WindowedMonitor(W, 0, lambda m, v: None, idle_ms=100 * W, max_open=3)
    monitor.add_predictions([pred(5)], [("t", 1, 1)])
    monitor.add_predictions([pred(k * W + 1) for k in range(1, 8)], [("t", 0, k) for k in range(1, 8)])
    closed = monitor.close_due(10 * W)
    assert [r.start_ms for r in closed] == [0, W, 2 * W, 3 * W, 4 * W] and monitor.closed_early == 5
    assert sorted(monitor._open[("m", "1")]) == [5 * W, 6 * W, 7 * W]
    # Scored and stored here (close_due), a window closed early is final: a record for it is late.
    monitor.add_predictions([pred(20)], [("t", 1, 2)])
    assert monitor.open_windows == 3 and monitor._open[("m", "1")][5 * W].late == 1 and monitor.watermark.at == 5


def test_a_carry_is_restored_once_per_version_and_judged_with_the_next_window():
    """Windows too small to judge are carried; a scorer started later (a restarted monitor) takes
    the carry from `carried` the first time it scores the version and judges it with the next."""
    spec = FeatureSpec((Feature("x", min=-1, max=1),))
    reference = build_reference(spec, {"x": list(np.linspace(-1, 1, 200))}, {}, [0.5] * 200, ["a"] * 200)
    first = WindowedMonitor(W, 0, lambda m, v: reference, DriftThresholds(min_count=100))
    first.add_predictions([dict(pred(i), numeric={"x": 0.1}) for i in range(60)])
    [small] = first.close_due(W)
    carry = first.scorer.carried(("m", "1"))
    assert small.drift == [] and carry.rows == 60
    loads = []
    second = WindowedMonitor(W, 0, lambda m, v: reference, DriftThresholds(min_count=100),
                             carried=lambda m, v: loads.append((m, v)) or Profile.from_bytes(carry.to_bytes()))
    second.add_predictions([dict(pred(W + i), numeric={"x": 0.1}) for i in range(60)])
    [judged] = second.close_due(2 * W)
    assert judged.drift and judged.rows == 60 and second.scorer.carried(("m", "1")) is None
    second.add_predictions([dict(pred(2 * W + i), numeric={"x": 0.1}) for i in range(60)])
    second.close_due(3 * W)
    assert loads == [("m", "1")]        # read once, not again after it was judged
