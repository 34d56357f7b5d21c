"""The feedback-loop benchmark's rate of a group of processes, from made-up samples."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_loop.py"
sys.path.insert(0, str(BENCH.parent))     # as when run as a script: it imports bench_store beside it
spec = importlib.util.spec_from_file_location("bench_loop", BENCH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_a_groups_rate_counts_only_the_time_every_process_was_at_work():
    # The first process works alone from t=0 to 2 (1,000/s), then both do 1,000/s each until the
    # second stops at t=6; the first goes on alone. Together: 2,000/s over t = 2..6.
    first = [(float(t), 1000.0 * t) for t in range(0, 9)]
    second = [(float(t), 1000.0 * (t - 2)) for t in range(3, 7)]
    second.insert(0, (2.0, 0.0))
    assert bench.group_rate([first, second]) == pytest.approx(2000.0)


def test_one_process_is_its_own_rate():
    assert bench.group_rate([[(1.0, 10.0), (3.0, 410.0)]]) == pytest.approx(200.0)
