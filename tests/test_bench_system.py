"""The whole-stack benchmark's verdict on one hold, from made-up samples (no stack, no clock)."""
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_system.py"
spec = importlib.util.spec_from_file_location("bench_system", BENCH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def hold(lags: list[int], rate: int = 1000, restarts_after: int = 0) -> list:
    """One sample a second at `rate` requests/s; the worker's lag as given, its CPU 100 µs a record,
    the broker's 50 µs a request, the machine's 200 µs a request."""
    return [bench.Sample(at=float(t), sent=rate * t, lag={"worker": lag}, records_in={"worker": rate * t},
                         cpu={"worker": rate * t * 1e-4, "broker": rate * t * 5e-5},
                         restarts={"worker": restarts_after if t == len(lags) - 1 else 0},
                         machine_cpu=rate * t * 2e-4)
            for t, lag in enumerate(lags)]


def test_a_lag_over_the_bound_during_the_settle_time_does_not_count():
    result = bench.judge(1000, hold([0, 5000, 1900, 300, 200, 100, 100]), settle_s=2, bound_s=2)
    assert result.sustained, result.failures
    assert result.max_lag_s == {"worker": 1.9}


def test_one_sample_over_the_bound_after_it_fails_the_rate_naming_the_processor():
    result = bench.judge(1000, hold([0, 0, 100, 2500, 100, 100, 100]), settle_s=2, bound_s=2)
    assert result.failures == ["worker 2.5s behind"]


def test_a_restart_a_vanished_lag_or_a_short_generator_fails_the_rate():
    assert bench.judge(1000, hold([0] * 7, restarts_after=1), 2, 2).failures == ["worker restarted"]
    gone = hold([0] * 7)
    gone[4].lag = {}
    assert bench.judge(1000, gone, 2, 2).failures == ["worker stopped reporting lag"]
    assert bench.judge(2000, hold([0] * 7), 2, 2).failures == ["generator sent 50% of the target"]


def test_cpu_is_per_record_consumed_or_else_per_request_sent():
    result = bench.judge(1000, hold([0] * 7), 2, 2)
    assert round(result.cpu_us_per_record["worker"], 6) == 100.0
    assert round(result.cpu_us_per_request["broker"], 6) == 50.0
    assert round(result.cores, 6) == 0.15
    assert round(result.other_cores, 6) == 0.05


def test_the_lag_trend_tells_falling_behind_from_keeping_up_in_bursts():
    growing = bench.judge(1000, hold([0, 0, 1000, 2000, 3000, 4000, 5000]), 2, 2)
    assert round(growing.lag_trend["worker"], 6) == 60.0           # a second of traffic more every second
    assert abs(bench.judge(1000, hold([0, 0, 3000, 0, 3000, 0, 3000]), 2, 2).lag_trend["worker"]) < 15
