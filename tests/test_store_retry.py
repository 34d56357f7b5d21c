"""The retry helper callers wrap store writes in: unavailable -> back off and try again;
anything else -> straight up."""
import threading

import pytest
from flywheel.feature_store import StoreError, StoreTimeout, StoreUnavailable, retrying


class Flaky:
    def __init__(self, failures: list[Exception]):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "written"


def test_retries_unavailable_with_growing_delays_until_it_works():
    call, seen, slept = Flaky([StoreUnavailable("down"), StoreTimeout("slow"), StoreUnavailable("down")]), [], []
    assert retrying(call, base_delay_s=0.1, max_delay_s=0.3, sleep=slept.append,
                    on_retry=lambda n, e, d: seen.append((n, type(e).__name__))) == "written"
    assert call.calls == 4
    assert seen == [(1, "StoreUnavailable"), (2, "StoreTimeout"), (3, "StoreUnavailable")]
    assert 0.05 <= slept[0] <= 0.1 and 0.1 <= slept[1] <= 0.2 and 0.15 <= slept[2] <= 0.3   # jittered, capped


def test_other_errors_are_not_retried():
    call = Flaky([StoreError("schema missing")])
    with pytest.raises(StoreError, match="schema missing"):
        retrying(call, sleep=lambda s: None)
    assert call.calls == 1


def test_gives_up_after_the_attempts_or_when_stopped():
    call = Flaky([StoreUnavailable(str(i)) for i in range(10)])
    with pytest.raises(StoreUnavailable, match="2"):
        retrying(call, attempts=3, sleep=lambda s: None)
    assert call.calls == 3
    stop = threading.Event()
    stop.set()
    with pytest.raises(StoreUnavailable):
        retrying(Flaky([StoreUnavailable("down")]), stop=stop)
