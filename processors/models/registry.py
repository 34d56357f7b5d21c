"""The model registry: artifacts on disk, deployment state on the `models` topic.

Each change is a compare-and-set on the model's numbered state: under the model's writer lock
(<data_dir>/models/<model>/state.lock, held by whichever process writes: CLI, retrainer,
rollout), read the state until it is the one the last writer left (the event log, appended
under the same lock, says which number that is), apply one transition to it, and produce the
result numbered one more. A writer that lost a race therefore re-applies its transition to the
winner's state, which either still allows it or refuses it (DeploymentError); no event can
carry a state older than the one before it, so none can undo another (a promotion followed by
a register from a stale read, say). Writers share the data dir anyway: the artifacts live there.
"""
import fcntl
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from flywheel.processors.models.deployment import Deployment, VersionRef
from flywheel.processors.models.errors import ModelsTopicBehind, UnknownModel
from flywheel.processors.models.follower import ModelFollower
from flywheel.processors.models.history import EventLog
from flywheel.processors.models.manifest import Manifest
from flywheel.processors.models.signing import EventSigner
from flywheel.processors.models.store import ArtifactStore
from flywheel.schemas import AvroSerde
from flywheel.schemas.features import FeatureSpec
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.clients import make_producer
from flywheel.streams.delivery import TrackedProducer
from flywheel.streams.settings import KafkaSettings


class ModelRegistry:
    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry, data_dir: Path, actor: str = "cli"):
        self.store = ArtifactStore(data_dir)
        self.history = EventLog(data_dir)
        self.actor = actor
        self._follower = ModelFollower(settings, registry)
        self._serde = AvroSerde(registry, "ModelEvent")
        self._out = TrackedProducer(make_producer(settings))
        self._signer = EventSigner.of(settings.model_signing_key)

    def deployments(self) -> dict[str, Deployment]:
        self._follower.catch_up()
        return self._follower.deployments()

    def events(self) -> dict[str, dict]:
        """The last ModelEvent of every model."""
        self._follower.catch_up()
        return dict(self._follower.events)

    def deployment(self, model: str) -> Deployment:
        found = self.deployments().get(model)
        if found is None:
            raise UnknownModel(f"model {model!r} is not registered")
        return found

    def manifest(self, model: str, version: str) -> Manifest:
        ref = self.deployment(model).versions[version]
        return self.store.load(model, version, ref.sha256)[0]

    def feature_spec(self, model: str) -> FeatureSpec | None:
        """The live version's feature spec, or None if the model is not registered."""
        found = self.deployments().get(model)
        if found is None or found.live_version is None:
            return None
        return self.store.manifest(model, found.live_version).features

    def register(self, onnx_bytes: bytes, manifest: Manifest, reason: str = "",
                 evidence: dict[str, float] | None = None) -> dict:
        # ONNX Runtime (the `serve` extra) is imported here only: reading deployments needs none.
        from flywheel.processors.models.probe import open_session
        open_session(manifest, onnx_bytes)     # a file that cannot serve never goes live
        path, manifest = self.store.save(onnx_bytes, manifest)
        ref = VersionRef(str(path.resolve()), manifest.sha256)
        return self._change(manifest.model, lambda d: (d.register(manifest.version, ref), manifest.version),
                            "REGISTERED", reason, evidence, create=True)

    def canary(self, model: str, version: str, share: float, reason: str = "", evidence=None) -> dict:
        return self._change(model, lambda d: (d.canary(version, share), version), "CANARY", reason, evidence)

    def shadow(self, model: str, version: str, reason: str = "", evidence=None) -> dict:
        return self._change(model, lambda d: (d.shadow(version), version), "SHADOW", reason, evidence)

    def promote(self, model: str, version: str | None = None, reason: str = "", evidence=None) -> dict:
        def promote(current: Deployment):
            new = current.promote(version)
            return new, new.live_version
        return self._change(model, promote, "PROMOTED", reason, evidence)

    def rollback(self, model: str, to: str | None = None, reason: str = "", evidence=None) -> dict:
        def rollback(current: Deployment):
            registered = {v: self.store.manifest(model, v).registered_at for v in current.versions}
            return current.rollback(to, registered)
        return self._change(model, rollback, "ROLLED_BACK", reason, evidence)

    def reject(self, model: str, version: str, reason: str, evidence=None) -> dict:
        """Record that a candidate was refused; the deployment stays as it is."""
        return self._change(model, lambda d: (d, version), "REJECTED", reason, evidence)

    def promote_canary(self, model: str, version: str, reason: str, evidence: dict[str, float]) -> dict:
        """Promote `version` if it is still the canary (DeploymentError if someone decided first)."""
        return self._change(model, lambda d: (d.still_canary(version).promote(version), version), "PROMOTED",
                            reason, evidence)

    def rollback_canary(self, model: str, version: str, reason: str, evidence: dict[str, float]) -> dict:
        """Drop `version` if it is still the canary (DeploymentError if someone decided first)."""
        return self._change(model, lambda d: (d.still_canary(version).rollback()[0], version), "ROLLED_BACK",
                            reason, evidence)

    def await_approval(self, model: str, version: str, reason: str, evidence: dict[str, float]) -> dict:
        """Record that the canary `version` passed its live evidence and waits for a person."""
        since = int(time.time() * 1000)
        return self._change(model, lambda d: (d.await_approval(version, since, reason, evidence), version),
                            "AWAITING_APPROVAL", reason, evidence)

    def approve(self, model: str, version: str, actor: str, reason: str) -> dict:
        """A person promotes the canary waiting for approval; the event carries its evidence."""
        return self._change(model, lambda d: (d.approve(version), version), "APPROVED", reason,
                            lambda d: d.awaiting.evidence, actor=actor)

    def decline(self, model: str, version: str, actor: str, reason: str) -> dict:
        """A person rolls back the canary waiting for approval."""
        return self._change(model, lambda d: (d.decline(version), version), "DECLINED", reason,
                            lambda d: d.awaiting.evidence, actor=actor)

    def _change(self, model: str, transition, kind: str, reason: str, evidence, create: bool = False,
                actor: str | None = None) -> dict:
        """Apply `transition(state) -> (new state, version the event is about)` to the latest
        state of `model` and publish the result, numbered one past the state it was based on.
        `evidence` may be a function of the state before the transition."""
        with self._writer(model):
            current = self._latest(model, create)
            new, version = transition(current)
            evidence = evidence(current) if callable(evidence) else evidence
            return self._emit(replace(new, state_version=current.state_version + 1), kind, version, reason,
                              evidence, actor or self.actor)

    @contextmanager
    def _writer(self, model: str):
        path = self.history.root / model / "state.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)       # released when the file closes
            yield

    def _latest(self, model: str, create: bool, timeout: float = 30.0) -> Deployment:
        """The state the last writer left: read the topic until it holds at least the number the
        event log ends with (the log is appended under the writer lock after the produce)."""
        logged = self.history.last_state_version(model)
        deadline = time.monotonic() + timeout
        while True:
            found = self.deployments().get(model)
            have = found.state_version if found else 0
            if have >= logged:
                break
            if time.monotonic() > deadline:
                raise ModelsTopicBehind(f"the models topic holds state {have} of {model}, its event log {logged}: "
                                         f"is the broker reachable, and was the stack's restore run (`flywheel up`)?")
        if found is None:
            if not create:
                raise UnknownModel(f"model {model!r} is not registered")
            found = Deployment(model)
        return found

    def _emit(self, state: Deployment, kind: str, version: str, reason: str, evidence, actor: str) -> dict:
        event = state.to_event(kind, version, actor, reason, evidence)
        self._produce(event)
        self._out.flush()
        self._follower.events[state.model] = event
        self.history.append(event)
        return event

    def restore(self) -> list[str]:
        """Put each model's last logged state back on a `models` topic that lost it (the embedded
        broker forgets everything when it stops). Returns the models restored."""
        on_topic = self.deployments()
        missing = {m: event for m, event in self.history.last().items() if m not in on_topic}
        for model, event in missing.items():
            self._produce(event)
            self._follower.events[model] = event
        self._out.flush()
        return sorted(missing)

    def _produce(self, event: dict) -> None:
        key, value = event["model"].encode(), self._serde.encode(event)
        headers = self._signer.headers(key, value) if self._signer else None
        self._out.produce(self._follower.topic, value, key=key, headers=headers)

    def close(self) -> None:
        self._follower.close()
