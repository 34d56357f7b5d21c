"""The model registry: versioned ONNX artifacts with manifests under <data_dir>/models,
sha256-verified loads, and deployment state (live, canary, shadows) as ModelEvents on the
compacted `models` topic, which workers follow to hot-swap versions."""
from flywheel.processors.models.deployment import Deployment, VersionRef
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.processors.models.errors import (
                                      DeploymentError,
                                      ManifestError,
                                      ModelRegistryError,
                                      TamperedModel,
                                      UnknownModel,
                                      UnknownVersion,
)
from flywheel.processors.models.follower import ModelFollower
from flywheel.processors.models.history import EventLog
from flywheel.processors.models.manifest import Manifest, OutputSpec
from flywheel.processors.models.registry import ModelRegistry
from flywheel.processors.models.store import ArtifactStore, sha256_of

__all__ = [
    "Deployment", "VersionRef", "MatrixLayout", "DeploymentError", "ManifestError", "ModelRegistryError",
    "TamperedModel", "UnknownModel", "UnknownVersion", "ModelFollower", "EventLog", "Manifest", "OutputSpec",
    "ModelRegistry", "ArtifactStore", "sha256_of",
]
