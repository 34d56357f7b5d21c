"""Typed failures of the model registry, one line each."""
from flywheel.errors import BadInput, FlywheelError, NotFound, Refused, Unavailable


class ModelRegistryError(FlywheelError):
    """Base of the model registry's errors; one not on a user branch below is a bug."""


class ManifestError(ModelRegistryError, BadInput):
    """A manifest (or the artifact it names) is missing, unreadable or inconsistent."""


class TamperedModel(ModelRegistryError, Refused):
    """A model file's sha256 does not match the registry: it is refused, never loaded; an operator
    looks into who changed it."""


class InvalidName(ManifestError):
    """A model, version or artifact name that could leave the artifact store's root."""


class UnregisteredVersion(ManifestError):
    """A version the artifact store has no record of."""


class ForgedEvent(ModelRegistryError, Refused):
    """A ModelEvent whose claims (sha256, signature) disagree with the registry's record or key."""


class UnloadableModel(ModelRegistryError, Refused):
    """ONNX Runtime refuses the file, or its outputs disagree with the manifest: the user's model."""


class UnknownModel(ModelRegistryError, NotFound):
    """No model of that name is registered."""


class UnknownVersion(ModelRegistryError, NotFound):
    """The model has no version of that name."""


class ModelsTopicBehind(ModelRegistryError, Unavailable):
    """The models topic did not catch up with the event log in time: the broker is away or slow
    (or the stack's restore has not run yet)."""


class DeploymentError(ModelRegistryError, Refused):
    """A deploy/promote/rollback that makes no sense in the model's current state."""
