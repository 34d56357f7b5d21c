"""A model's deployment state and the transitions between states. Every transition yields a
ModelEvent that carries the whole state after it (the `models` topic is compacted by model),
numbered by `state_version`: each event is based on the state numbered one less, so a writer
can tell whether the state it read is still the latest (registry.py)."""
import time
from dataclasses import dataclass, field, replace

from flywheel.processors.models.errors import DeploymentError, UnknownVersion


@dataclass(frozen=True)
class VersionRef:
    manifest_path: str
    sha256: str


@dataclass(frozen=True)
class AwaitingApproval:
    """The canary passed its live evidence at `since` (epoch ms) and waits for a person."""
    since: int
    reason: str
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    model: str
    live_version: str | None = None
    canary_version: str | None = None
    canary_share: float = 0.0
    shadow_versions: tuple[str, ...] = ()
    versions: dict[str, VersionRef] = field(default_factory=dict)
    state_version: int = 0            # events applied so far; 0 before the first
    awaiting: AwaitingApproval | None = None   # the canary's, when it waits for a person

    @property
    def serving(self) -> list[str]:
        """Every version a worker must have loaded: live, canary, shadows."""
        out = [v for v in (self.live_version, self.canary_version) if v]
        return out + [v for v in self.shadow_versions if v not in out]

    def to_event(self, kind: str, version: str, actor: str = "cli", reason: str = "",
                 evidence: dict[str, float] | None = None) -> dict:
        return {
            "model": self.model, "kind": kind, "version": version, "at": int(time.time() * 1000),
            "actor": actor, "reason": reason, "evidence": dict(evidence or {}),
            "live_version": self.live_version, "canary_version": self.canary_version,
            "canary_share": float(self.canary_share), "shadow_versions": list(self.shadow_versions),
            "versions": {v: {"manifest_path": r.manifest_path, "sha256": r.sha256} for v, r in self.versions.items()},
            "state_version": self.state_version,
            "awaiting_approval": {"since": self.awaiting.since, "reason": self.awaiting.reason,
                                  "evidence": dict(self.awaiting.evidence)} if self.awaiting else None,
        }

    @classmethod
    def from_event(cls, event: dict) -> "Deployment":
        return cls(event["model"], event.get("live_version"), event.get("canary_version"),
                   float(event.get("canary_share") or 0.0), tuple(event.get("shadow_versions") or ()),
                   {v: VersionRef(r["manifest_path"], r["sha256"]) for v, r in (event.get("versions") or {}).items()},
                   int(event.get("state_version") or 0), _awaiting(event.get("awaiting_approval")))

    # -- transitions -------------------------------------------------------------------------------

    def register(self, version: str, ref: VersionRef) -> "Deployment":
        if version in self.versions:
            raise DeploymentError(f"{self.model} version {version} is already registered")
        versions = {**self.versions, version: ref}
        # The first version of a model serves at once: there is nothing else to answer with.
        return replace(self, versions=versions, live_version=self.live_version or version)

    def canary(self, version: str, share: float) -> "Deployment":
        self._known(version)
        if not 0.0 < share <= 1.0:
            raise DeploymentError(f"canary share must be in (0, 100] percent, not {share * 100:g}")
        if version == self.live_version:
            raise DeploymentError(f"{self.model} version {version} is already live")
        if self.canary_version not in (None, version):
            # An undecided canary is someone's experiment: replacing it would throw its evidence away.
            raise DeploymentError(f"{self.model} version {self.canary_version} is still an undecided canary: "
                                  f"promote or roll it back first")
        return replace(self, canary_version=version, canary_share=share, awaiting=None,
                       shadow_versions=tuple(v for v in self.shadow_versions if v != version))

    def shadow(self, version: str) -> "Deployment":
        self._known(version)
        if version in (self.live_version, self.canary_version):
            raise DeploymentError(f"{self.model} version {version} already answers requests")
        if version in self.shadow_versions:
            raise DeploymentError(f"{self.model} version {version} is already a shadow")
        return replace(self, shadow_versions=self.shadow_versions + (version,))

    def promote(self, version: str | None = None) -> "Deployment":
        version = version or self.canary_version
        if version is None:
            raise DeploymentError(f"{self.model} has no canary to promote; name a version")
        self._known(version)
        canary = None if version == self.canary_version else self.canary_version
        return replace(self, live_version=version, canary_version=canary,
                       canary_share=self.canary_share if canary else 0.0, awaiting=self.awaiting if canary else None,
                       shadow_versions=tuple(v for v in self.shadow_versions if v != version))

    def rollback(self, to: str | None = None, registered: dict[str, int] | None = None) -> tuple["Deployment", str]:
        """Drop the canary if there is one; else put back `to` (default: the version registered
        last before the live one). Returns the new state and the version rolled back."""
        if self.canary_version and to is None:
            return replace(self, canary_version=None, canary_share=0.0, awaiting=None), self.canary_version
        if to is None:
            registered = registered or {}
            older = [v for v in self.versions if v != self.live_version
                     and registered.get(v, 0) <= registered.get(self.live_version, 0)]
            if not older:
                raise DeploymentError(f"{self.model} has no canary and no earlier version to roll back to")
            to = max(older, key=lambda v: registered.get(v, 0))
        self._known(to)
        return replace(self, live_version=to, canary_version=None, canary_share=0.0, awaiting=None,
                       shadow_versions=tuple(v for v in self.shadow_versions if v != to)), self.live_version

    def await_approval(self, version: str, since: int, reason: str, evidence: dict[str, float]) -> "Deployment":
        return replace(self.still_canary(version), awaiting=AwaitingApproval(since, reason, dict(evidence)))

    def still_canary(self, version: str) -> "Deployment":
        """This state, if `version` is still its canary: a judgement of a canary that someone has
        decided on since must not act on whatever the state is now."""
        if version != self.canary_version:
            raise DeploymentError(f"{self.model} version {version} is no longer the canary "
                                  f"(canary: {self.canary_version or 'none'})")
        return self

    def approve(self, version: str) -> "Deployment":
        """Promote the canary waiting for approval; it must be `version`."""
        self._waiting(version)
        return self.promote(version)

    def decline(self, version: str) -> "Deployment":
        """Roll back the canary waiting for approval; it must be `version`."""
        self._waiting(version)
        return self.rollback()[0]

    def _waiting(self, version: str) -> None:
        if self.awaiting is None or version != self.canary_version:
            waiting = f"{self.canary_version} is" if self.awaiting else "no canary is"
            raise DeploymentError(f"{self.model} version {version} is not waiting for approval ({waiting})")

    def _known(self, version: str) -> None:
        if version not in self.versions:
            raise UnknownVersion(f"{self.model} has no version {version!r}; registered: "
                                 f"{', '.join(sorted(self.versions)) or 'none'}")


def _awaiting(record: dict | None) -> AwaitingApproval | None:
    if not record:
        return None
    return AwaitingApproval(int(record["since"]), record.get("reason") or "", dict(record.get("evidence") or {}))
