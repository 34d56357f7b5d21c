"""Retry with backoff for callers that must not lose a write: while the store is unavailable,
wait (exponentially longer, with jitter) and try again; other errors go straight up."""
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from flywheel.feature_store.errors import StoreUnavailable

T = TypeVar("T")


def retrying(call: Callable[[], T], *, attempts: int | None = None, base_delay_s: float = 0.05,
             max_delay_s: float = 5.0, stop: threading.Event | None = None,
             on_retry: Callable[[int, StoreUnavailable, float], None] | None = None,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Return `call()`, retrying StoreUnavailable. attempts=None retries until it works or `stop`
    is set (then the last error is raised); `on_retry(attempt, error, delay_s)` sees each retry."""
    attempt = 0
    while True:
        try:
            return call()
        except StoreUnavailable as error:
            attempt += 1
            if (attempts is not None and attempt >= attempts) or (stop is not None and stop.is_set()):
                raise
            delay = min(max_delay_s, base_delay_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if on_retry:
                on_retry(attempt, error, delay)
            if stop is not None:
                stop.wait(delay)
            else:
                sleep(delay)
