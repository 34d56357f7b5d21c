"""Typed failures of the model registry, one line each."""


class ModelRegistryError(Exception):
    pass


class ManifestError(ModelRegistryError):
    """A manifest is missing, unreadable or inconsistent."""


class TamperedModel(ModelRegistryError):
    """A model file's sha256 does not match the registry: it is refused, never loaded."""


class UnknownModel(ModelRegistryError):
    pass


class UnknownVersion(ModelRegistryError):
    pass


class DeploymentError(ModelRegistryError):
    """A deploy/promote/rollback that makes no sense in the model's current state."""
