"""Typed store errors. Callers tell "try again later" (StoreUnavailable) from "fix something"
(the others); `feature_store.retry.retrying` retries only the former."""
from flywheel.errors import BadInput, BadRecord, FlywheelError, Unavailable, UserError


class StoreError(FlywheelError):
    """Base of every error the store raises on purpose. Raised itself, it is an answer the store
    should never give (a protocol or validation error of the driver): a bug, with a traceback."""


class StoreUnavailable(StoreError, Unavailable):
    """The store is down, overloaded or locked: the write did not happen; retry it."""


class StoreTimeout(StoreUnavailable):
    """The store did not answer in time. The write may or may not have happened; every write is
    idempotent by its key, so retrying it is safe."""


class StoreNotMigrated(StoreError, UserError):
    """The tables are missing: the user runs `flywheel store migrate`."""


class StoreConfigError(StoreError, BadInput):
    """The store settings are wrong (unknown backend, bad consistency level, missing hosts)."""


class InvalidRecord(StoreError, BadRecord, ValueError):
    """A record the store refuses (a row of a features file that is not JSON, an unknown retrain
    status): the record's content is wrong."""
