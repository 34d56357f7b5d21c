"""Typed store errors. Callers tell "try again later" (StoreUnavailable) from "fix something"
(the others); `feature_store.retry.retrying` retries only the former."""


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class StoreUnavailable(StoreError):
    """The store is down, overloaded or locked: the write did not happen; retry it."""


class StoreTimeout(StoreUnavailable):
    """The store did not answer in time. The write may or may not have happened; every write is
    idempotent by its key, so retrying it is safe."""


class StoreNotMigrated(StoreError):
    """The tables are missing: run `flywheel store migrate`."""


class StoreConfigError(StoreError):
    """The store settings are wrong (unknown backend, bad consistency level, missing hosts)."""


class InvalidRecord(StoreError, ValueError):
    """A record the store refuses (e.g. an unknown retrain status)."""
