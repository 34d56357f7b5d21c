"""The model registry: artifacts on disk, deployment state on the `models` topic.

Each operation reads the model's current state (the last event), applies one transition and
produces the resulting ModelEvent. Two writers acting on one model at the same instant race
(last event wins); the CLI, the retrainer and people act rarely enough for that to be fine.
"""
from pathlib import Path

from schemas import AvroSerde
from schemas.features import FeatureSpec
from schemas.registry.base import SchemaRegistry
from streams.clients import make_producer
from streams.delivery import TrackedProducer
from streams.settings import KafkaSettings

from processors.models.deployment import Deployment, VersionRef
from processors.models.errors import UnknownModel
from processors.models.follower import ModelFollower
from processors.models.history import EventLog
from processors.models.manifest import Manifest
from processors.models.probe import open_session
from processors.models.signing import EventSigner
from processors.models.store import ArtifactStore


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
        current = self.deployments().get(manifest.model) or Deployment(manifest.model)
        open_session(manifest, onnx_bytes)     # a file that cannot serve never goes live
        path, manifest = self.store.save(onnx_bytes, manifest)
        ref = VersionRef(str(path.resolve()), manifest.sha256)
        return self._emit(current.register(manifest.version, ref), "REGISTERED", manifest.version, reason, evidence)

    def canary(self, model: str, version: str, share: float, reason: str = "", evidence=None) -> dict:
        return self._emit(self.deployment(model).canary(version, share), "CANARY", version, reason, evidence)

    def shadow(self, model: str, version: str, reason: str = "", evidence=None) -> dict:
        return self._emit(self.deployment(model).shadow(version), "SHADOW", version, reason, evidence)

    def promote(self, model: str, version: str | None = None, reason: str = "", evidence=None) -> dict:
        current = self.deployment(model)
        new = current.promote(version)
        return self._emit(new, "PROMOTED", new.live_version, reason, evidence)

    def rollback(self, model: str, to: str | None = None, reason: str = "", evidence=None) -> dict:
        current = self.deployment(model)
        registered = {v: self.store.manifest(model, v).registered_at for v in current.versions}
        new, rolled_back = current.rollback(to, registered)
        return self._emit(new, "ROLLED_BACK", rolled_back, reason, evidence)

    def reject(self, model: str, version: str, reason: str, evidence=None) -> dict:
        """Record that a candidate was refused; the deployment stays as it is."""
        return self._emit(self.deployment(model), "REJECTED", version, reason, evidence)

    def _emit(self, state: Deployment, kind: str, version: str, reason: str, evidence) -> dict:
        event = state.to_event(kind, version, self.actor, reason, evidence)
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
