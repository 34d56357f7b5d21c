"""The simulator's loop: requests at a steady rate, labels after a random delay (some never),
and the concept's drift at a set time. `speed` compresses the story: every duration is in
story seconds and runs `speed` times faster in real time."""
import heapq
import logging
import time

import numpy as np
from flywheel.processors.simulator.concept import Concept
from flywheel.processors.simulator.settings import SimulatorSettings
from flywheel.streams.labels import LabelPublisher
from flywheel.streams.publisher import Publisher, Request

log = logging.getLogger("flywheel.simulator")


class TrafficSimulator:
    def __init__(self, settings: SimulatorSettings, publisher: Publisher, labels: LabelPublisher,
                 concept: Concept | None = None):
        self.s = settings
        self.publisher, self.labels = publisher, labels
        self.concept = concept or Concept()
        self.rng = np.random.default_rng(settings.seed)
        self._due: list[tuple[float, str, str]] = []   # (real due time, request id, label)
        self.sent = self.labelled = 0

    def run(self, stop) -> None:
        """Until `stop` (a threading.Event) is set or the duration has passed."""
        started = time.monotonic()
        tick = 0.1
        while not stop.is_set():
            story = (time.monotonic() - started) * self.s.speed
            if self.s.duration and story >= self.s.duration:
                break
            if 0 <= self.s.drift_at <= story and not self.concept.drifted:
                self.concept.drift()
                log.info("concept drifted at %d", int(time.time() * 1000))
            self.step(int(self.rng.poisson(self.s.rate * tick)))
            stop.wait(max(0.0, tick - (time.monotonic() - started - (story / self.s.speed))))
        self.publisher.flush()
        self.labels.flush()

    def step(self, n: int) -> None:
        """Publish `n` requests and every label now due."""
        if n:
            data = self.concept.sample(n, self.rng)
            entities = self.rng.integers(0, self.s.entities, n)
            now = time.monotonic()
            delays = self.rng.exponential(self.s.label_delay_mean / self.s.speed, n)
            labelled = self.rng.random(n) < self.s.label_share
            for row, entity, truth, delay, keep in zip(data.rows(), entities, data.target, delays, labelled):
                request_id = self.publisher.publish(Request(row, entity_id=f"c{entity}"))
                if keep:
                    heapq.heappush(self._due, (now + delay, request_id, str(truth)))
            self.sent += n
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, request_id, truth = heapq.heappop(self._due)
            self.labels.label(request_id, label=truth, model=self.s.model)
            self.labelled += 1
