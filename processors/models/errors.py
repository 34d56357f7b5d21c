"""Typed failures of the model registry, one line each."""


class ModelRegistryError(Exception):
    pass


class ManifestError(ModelRegistryError):
    """A manifest is missing, unreadable or inconsistent."""


class TamperedModel(ModelRegistryError):
    """A model file's sha256 does not match the registry: it is refused, never loaded."""


class InvalidName(ManifestError):
    """A model, version or artifact name that could leave the artifact store's root."""


class UnregisteredVersion(ManifestError):
    """A version the artifact store has no record of."""


class ForgedEvent(ModelRegistryError):
    """A ModelEvent whose claims (sha256, signature) disagree with the registry's record or key."""


class UnloadableModel(ModelRegistryError):
    """ONNX Runtime refuses the file, or its outputs disagree with the manifest."""


class UnknownModel(ModelRegistryError):
    pass


class UnknownVersion(ModelRegistryError):
    pass


class DeploymentError(ModelRegistryError):
    """A deploy/promote/rollback that makes no sense in the model's current state."""
