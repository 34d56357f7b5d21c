"""Every error Flywheel raises on purpose descends from `FlywheelError`, on one of two branches
or on neither, and the branch is the whole rule for what to do about it:

- `UserError`: something the user gave is wrong (a setting, a name, a file, a record, a request
  Flywheel refuses). The CLI prints its message as one line and exits 1; an SDK caller shows it to
  whoever gave the input. A stream processor turns a record's `BadRecord` into a dead letter.
- `Unavailable`: a dependency (broker, feature store, schema registry) did not answer. Nothing is
  wrong with the input: wait and try again. Stream processors wait it out with backoff; the CLI
  prints one line and exits 75 (EX_TEMPFAIL, "try again later").
- any other `FlywheelError` (and any other exception): a bug, or a state the process cannot go
  on from (a fenced producer). It propagates with its traceback; the supervisor restarts the
  process from its last committed offsets.

A new dependency's "not answering" errors subclass `Unavailable`, and every loop that waits
already waits for them. This module imports nothing of ours, so every package can import it.
"""
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from typing import IO


class FlywheelError(Exception):
    """The root: `except FlywheelError` catches every error Flywheel raises on purpose."""


class UserError(FlywheelError):
    """The user's to fix: the message says what is wrong and, where it can, what to do."""


class BadInput(UserError):
    """A flag value, argument or file the user gave is malformed, missing or unreadable."""


class NotFound(UserError):
    """A name the user gave (model, version, topic, replay run, running stack) does not exist."""


class Refused(UserError):
    """A well-formed request Flywheel will not carry out in the current state (a rollout step that
    makes no sense, a model that fails its checks, a request the worker dead-lettered)."""


class BadRecord(UserError):
    """A record's content is wrong (undecodable, a feature out of spec): a processor makes it a
    dead letter and moves on; a command that was handed it reports it. `reason` is the tag."""

    reason = "invalid"


class Unavailable(FlywheelError):
    """A dependency did not answer (down, unreachable, overloaded, timed out): retry later."""


@contextmanager
def user_path(path: str | PathLike) -> Iterator[None]:
    """Around the use of a path the user gave: a file that is missing, unreadable or a directory
    is the user's to fix (`BadInput` naming it). Map it where the path enters and nowhere else: an
    OSError of Flywheel's own files is not the user's mistake."""
    try:
        yield
    except OSError as e:
        raise BadInput(f"{path}: {e.strerror or e}") from e


def open_user_file(path: str | PathLike, mode: str = "r", **kwargs) -> IO:
    """`open(path, mode)` for a path the user gave (see `user_path`)."""
    with user_path(path):
        return open(path, mode, **kwargs)
