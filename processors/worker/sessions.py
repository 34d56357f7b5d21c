"""Loaded model versions: a verified ONNX Runtime session per version with explicit options,
and the model-level routing (live, canary share by entity hash, shadows)."""
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from flywheel.processors.models import ArtifactStore, Deployment, Manifest, ManifestError, MatrixLayout
from flywheel.processors.models.errors import ModelRegistryError
from flywheel.processors.models.probe import open_session

ROLE_LIVE, ROLE_CANARY, ROLE_SHADOW = "LIVE", "CANARY", "SHADOW"


class LoadedVersion:
    def __init__(self, manifest: Manifest, onnx_bytes: bytes, intra_op_threads: int = 1, cache_size: int = 0):
        self.manifest = manifest
        self.version = manifest.version
        self.session, self.output = open_session(manifest, onnx_bytes, intra_op_threads)
        self.input = manifest.input_name
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def run(self, matrix: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output], {self.input: matrix})[0]
        return out.reshape(len(matrix), -1)

    def run_cached(self, matrix: np.ndarray) -> tuple[np.ndarray, int]:
        """Answers for every row, computing each distinct uncached row once. Returns (answers,
        hits), a hit being a row answered without running the model for it."""
        keys = [row.tobytes() for row in matrix]
        found = [self._cache.get(k) for k in keys]
        missing: dict[bytes, int] = {}
        for i, f in enumerate(found):
            if f is None:
                missing.setdefault(keys[i], i)
        if missing:
            fresh = self.run(matrix[list(missing.values())])
            for j, key in enumerate(missing):
                self._cache[key] = fresh[j]
            found = [f if f is not None else self._cache[k] for f, k in zip(found, keys)]
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return np.stack(found), len(keys) - len(missing)


@dataclass
class ServedModel:
    """What one model serves right now. Replaced whole (never mutated) on a ModelEvent."""

    deployment: Deployment
    live: LoadedVersion
    layout: MatrixLayout
    canary: LoadedVersion | None = None
    shadows: list[LoadedVersion] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.deployment.model

    def roles(self) -> list[tuple[str, str]]:
        out = [(self.live.version, ROLE_LIVE)]
        if self.canary:
            out.append((self.canary.version, ROLE_CANARY))
        return out + [(s.version, ROLE_SHADOW) for s in self.shadows]

    def canary_mask(self, entity_ids: list[str]) -> np.ndarray:
        """Deterministic: an entity always lands on the same side for a given share."""
        if self.canary is None or not entity_ids:
            return np.zeros(len(entity_ids), dtype=bool)
        threshold = int(self.deployment.canary_share * 2 ** 32)
        return np.fromiter((zlib.crc32(e.encode()) < threshold for e in entity_ids), dtype=bool,
                           count=len(entity_ids))


class ModelLoader:
    """Builds ServedModels from deployments, reusing sessions already loaded for unchanged
    versions. Each version is resolved by name in the worker's own artifact store and verified
    against the store's record (never a path or hash the event alone carries). A version that
    fails is left out and reported: a canary or shadow is dropped (live answers its share); a
    live version that fails raises, and the caller keeps what it served."""

    def __init__(self, store: ArtifactStore, intra_op_threads: int = 1, cache_size: int = 0):
        self.store = store
        self.intra_op_threads = intra_op_threads
        self.cache_size = cache_size

    def build(self, deployment: Deployment, current: ServedModel | None
              ) -> tuple[ServedModel | None, dict[str, ModelRegistryError]]:
        """The model as it should serve now, and the versions refused (version -> why)."""
        if deployment.live_version is None:
            return None, {}
        loaded = {v.version: v for v in ([current.live, current.canary, *current.shadows] if current else []) if v}
        versions, failed = {}, {}
        for version in deployment.serving:
            ref = deployment.versions.get(version)
            claimed = ref.sha256 if ref else None
            reuse = loaded.get(version)
            if reuse is not None and reuse.manifest.sha256 == claimed:
                versions[version] = reuse
                continue
            try:
                manifest, data = self.store.load(deployment.model, version, claimed)
                versions[version] = LoadedVersion(manifest, data, self.intra_op_threads, self.cache_size)
            except ModelRegistryError as e:
                failed[version] = e
        if deployment.live_version in failed:
            raise failed[deployment.live_version]
        live = versions[deployment.live_version]
        for v in list(versions.values()):
            if (v.manifest.features, v.manifest.categorical_encoding) != \
                    (live.manifest.features, live.manifest.categorical_encoding):
                failed[v.version] = ManifestError(
                    f"{deployment.model}/{v.version} expects other features than live {live.version}: "
                    "one worker batch feeds every version the same matrix")
                del versions[v.version]
        canary = versions.get(deployment.canary_version) if deployment.canary_version else None
        served = ServedModel(
            deployment, live, MatrixLayout(live.manifest.features, live.manifest.categorical_encoding),
            canary, [versions[v] for v in deployment.shadow_versions if v in versions])
        return served, failed
