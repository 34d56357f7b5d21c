"""Typed failures of the serde and registries: each names what went wrong in one line."""
from flywheel.errors import BadInput, BadRecord, FlywheelError, Refused, Unavailable


class SerdeError(BadRecord):
    """A message could not be encoded or decoded: the record's content is wrong (a dead letter in a
    processor). `reason` is a stable machine-readable tag."""

    reason = "undecodable"


class BadMagicByte(SerdeError):
    """The message does not start with the Confluent wire format's magic byte: not Avro of ours."""

    reason = "undecodable"


class TruncatedMessage(SerdeError):
    """The message ends before its header or its Avro body does."""

    reason = "undecodable"


class UnknownSchemaId(SerdeError):
    """The registry answered and has no such schema id: the record names a schema nobody
    registered (a registry that does not answer is `RegistryUnavailable`, never this)."""

    reason = "unknown_schema"

    def __init__(self, schema_id: int):
        super().__init__(f"schema id {schema_id} is not in the registry")
        self.schema_id = schema_id


class SchemaRegistryError(FlywheelError):
    """The registry answered with an error Flywheel did not expect (neither "not found" nor
    "unavailable"): a bug, or a registry set up unlike any Flywheel knows; a traceback."""


class RegistryUnavailable(SchemaRegistryError, Unavailable):
    """The registry did not answer (down, unreachable, its file unreadable): nothing is wrong
    with the record being decoded, so a processor waits and retries instead of dead-lettering."""


class RegistryAccessDenied(SchemaRegistryError, BadInput):
    """The registry refused Flywheel's credentials (401, 403): the user's registry settings to fix;
    waiting would not help, so a processor exits with this line instead of holding back."""


class IncompatibleSchema(SchemaRegistryError, Refused):
    """A new schema version breaks the subject's compatibility rule: the user's schema change to fix."""

    def __init__(self, subject: str, mode: str, problems: list[str]):
        self.subject, self.mode, self.problems = subject, mode, problems
        super().__init__(f"schema for {subject} is not {mode} compatible: {'; '.join(problems)}")


def clip(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, saying how long it was: values echoed in one-line errors
    and dead-letter details stay readable when a value is a megabyte."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} chars)"


class FeatureProblem(BadRecord, ValueError):
    """A request's features do not fit the model's feature spec: the record's content is wrong.
    `reason` is the dead-letter tag."""

    def __init__(self, feature: str, reason: str, detail: str):
        self.feature, self.reason, self.detail = feature, reason, detail
        super().__init__(f"feature '{clip(feature)}': {detail}")
