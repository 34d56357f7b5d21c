"""A token bucket: at most `rate` records per second on average, bursts of a tenth of a second."""
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate = rate
        self._clock, self._sleep = clock, sleep
        self._capacity = max(1.0, (rate or 0) / 10)
        self._tokens = self._capacity
        self._last = clock()

    def acquire(self) -> None:
        """Wait until one more record may go."""
        if self.rate is None:
            return
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            self._sleep((1 - self._tokens) / self.rate)
            self._tokens, self._last = 1.0, self._clock()
        self._tokens -= 1
