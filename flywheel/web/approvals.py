"""The approvals page's data and actions: the canaries waiting for a person, and a person's
decision, through processors/rollout/approval.py (what `flywheel models approve|reject` calls, so
both record the same ModelEvent). One lock: the registry's Kafka clients serve one thread at a
time, and the console serves several."""
import threading

from flywheel.processors.models import ModelRegistry
from flywheel.processors.rollout import approval
from flywheel.processors.rollout.approval import Waiting


class Approvals:
    def __init__(self, models: ModelRegistry):
        self._models = models
        self._lock = threading.Lock()

    def waiting(self) -> dict[str, Waiting]:
        """The waiting canary of each model that has one."""
        with self._lock:
            return {w.model: w for w in approval.waiting(self._models)}

    def decide(self, model: str, version: str, approve: bool, who: str, reason: str) -> dict:
        """Approve (promote) or reject (roll back) the waiting canary; DeploymentError if it does not wait."""
        act = approval.approve if approve else approval.reject
        with self._lock:
            return act(self._models, model, version, who, reason)
