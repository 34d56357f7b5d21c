"""The rollout loop: every interval, for every model with a canary, compare canary and live
version on the labelled feedback both received since the canary's first answer (the same
period, so a drift hits both alike) and promote or roll back when the judge decides, as a
ModelEvent carrying the evidence. Replayed traffic is not live evidence and is left out.

With manual approval ([rollout] approval, or the model's own [rollout.models.<model>]) a canary
that earns promotion is not promoted: it is marked as awaiting approval (approval.py decides
the rest, on a person's word). It is still judged while it waits, and rolled back if its
evidence turns against it."""
import logging
import threading

import numpy as np
from flywheel.feature_store import FeatureStore, FeedbackRecord, wall_clock_ms
from flywheel.processors.joiner.join import REPLAY_FLAG
from flywheel.processors.models import Deployment, ModelRegistry
from flywheel.processors.models.errors import DeploymentError
from flywheel.processors.rollout.judge import Decision, Verdict, decide
from flywheel.processors.rollout.settings import RolloutSettings
from flywheel.processors.runtime import ProcessorMetrics
from flywheel.processors.runtime.failures import hold_back, run_batches
from flywheel.processors.runtime.leadership import Leadership, SoleLeader
from flywheel.schemas.setting import for_model
from prometheus_client import Counter

log = logging.getLogger("flywheel.rollout")


class RolloutMetrics(ProcessorMetrics):
    def __post_init__(self):
        super().__post_init__()
        self.decisions = Counter("flywheel_rollout_decisions", "Canary decisions taken",
                                 ["model", "verdict"], registry=self.registry)


def losses(records: list[FeedbackRecord]) -> np.ndarray:
    """0/1 error for classified records, squared error for regressed ones."""
    return np.array([float(r.predicted_label != r.true_label) if r.true_label is not None
                     else (r.predicted_value - r.true_value) ** 2 for r in records
                     if r.true_label is not None or (r.true_value is not None and r.predicted_value is not None)])


class Rollout:
    def __init__(self, store: FeatureStore, models: ModelRegistry, settings: RolloutSettings,
                 metrics: RolloutMetrics | None = None, stop: threading.Event | None = None, clock=wall_clock_ms,
                 leadership: Leadership | SoleLeader | None = None):
        self.store, self.models, self.settings, self.clock = store, models, settings, clock
        self.leadership = leadership or SoleLeader()
        self.metrics = metrics or RolloutMetrics()
        self.stop = stop or threading.Event()

    def run(self) -> None:
        try:
            run_batches(self._round, self.stop, "rollout")
        finally:
            self.leadership.close()

    def _round(self) -> None:
        self.evaluate_all()
        self.stop.wait(self.settings.interval_seconds)

    def evaluate_all(self) -> dict[str, Decision]:
        """Judge the canary of every model this process leads (processors/runtime/leadership.py)."""
        decisions = {}
        for model, deployment in self.models.deployments().items():
            with self.leadership.deciding(model) as leads:
                if leads and deployment.canary_version:
                    decisions[model] = self.evaluate(deployment)
        return decisions

    def evaluate(self, deployment: Deployment) -> Decision:
        canary, live = self._feedback(deployment.model, deployment.canary_version), \
            self._feedback(deployment.model, deployment.live_version)
        since = min((r.event_time for r in canary), default=self.clock())
        live = [r for r in live if r.event_time >= since]
        decision = decide(losses(canary), losses(live), self.settings)
        try:
            acted = self._act(deployment, decision)
        except DeploymentError as e:     # someone decided on this canary since it was read
            log.info("%s canary %s: %s", deployment.model, deployment.canary_version, e)
            return decision
        if acted:
            self.metrics.decisions.labels(deployment.model, acted).inc()
            log.info("%s canary %s: %s (%s)", deployment.model, deployment.canary_version, acted, decision.reason)
        return decision

    def _act(self, d: Deployment, decision: Decision) -> str | None:
        """Carry out the judge's verdict; returns what was done (None: nothing new)."""
        if decision.verdict is Verdict.ROLL_BACK:
            self.models.rollback_canary(d.model, d.canary_version, decision.reason, decision.evidence)
            return decision.verdict.value
        if decision.verdict is Verdict.WAIT:
            return None
        if for_model(self.settings, d.model).approval == "auto":
            self.models.promote_canary(d.model, d.canary_version, decision.reason, decision.evidence)
            return decision.verdict.value
        if d.awaiting is None:           # once: the canary keeps serving, and being judged, while it waits
            self.models.await_approval(d.model, d.canary_version, decision.reason, decision.evidence)
            return "await_approval"
        return None

    def _feedback(self, model: str, version: str) -> list[FeedbackRecord]:
        now = self.clock()
        start = now - int(self.settings.lookback_seconds * 1000)
        return hold_back(lambda: [r for r in self.store.feedback(model, start, now + 1, version)
                                  if REPLAY_FLAG not in r.flags], self.stop, "rollout")
