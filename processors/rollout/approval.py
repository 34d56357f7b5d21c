"""People in the rollout: the canaries waiting for a decision, and a person's approve or reject.

With manual approval the rollout marks a canary that passed its live evidence as awaiting
approval instead of promoting it (process.py). This module is what a person acts through, the
CLI (`flywheel models approve|reject`) and the console alike: each decision is a ModelEvent
(APPROVED: the canary is promoted; DECLINED: it is rolled back) naming who decided and why,
carrying the evidence the canary passed with. Deciding on a version that is not the waiting
canary is a DeploymentError, one line, and changes nothing.
"""
from dataclasses import dataclass

from flywheel.processors.models import ModelRegistry
from flywheel.processors.models.errors import DeploymentError


@dataclass(frozen=True)
class Waiting:
    """A canary waiting for a person: what it would replace and the evidence it passed with."""
    model: str
    version: str
    live_version: str | None
    canary_share: float
    since: int                       # epoch ms: when it passed its evidence
    reason: str                      # the judge's, e.g. "canary loss 0.12 < live 0.31 (p=1e-05)"
    evidence: dict[str, float]


def waiting(models: ModelRegistry) -> list[Waiting]:
    """Every canary waiting for approval, the longest waiting first."""
    found = [Waiting(d.model, d.canary_version, d.live_version, d.canary_share, d.awaiting.since,
                     d.awaiting.reason, dict(d.awaiting.evidence))
             for d in models.deployments().values() if d.awaiting and d.canary_version]
    return sorted(found, key=lambda w: w.since)


def approve(models: ModelRegistry, model: str, version: str, who: str, reason: str) -> dict:
    """Promote the waiting canary `version` of `model`; returns the APPROVED ModelEvent."""
    return models.approve(model, version, _who(who), reason)


def reject(models: ModelRegistry, model: str, version: str, who: str, reason: str) -> dict:
    """Roll back the waiting canary `version` of `model`; returns the DECLINED ModelEvent."""
    return models.decline(model, version, _who(who), reason)


def _who(who: str) -> str:
    # The record of a decision is worth only as much as its name: no anonymous approvals.
    if not who.strip():
        raise DeploymentError("a decision needs the name of who takes it")
    return who.strip()
