"""One setting of a settings dataclass, documented where it is declared.

`setting(60.0, unit="s", doc="...", min=0)` is a dataclass field whose metadata carries what a
person needs to set it (its doc and unit) and what the loader checks before anything starts (its
choices, bounds, and an optional `check` of the value). The settings reference is rendered from
the same metadata, so the docs cannot drift from the code. It lives here, beside `Secret`,
because every layer declares settings and this package imports nothing of ours.
"""
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A field's own check: the problem with a value (None: fine); `base` is the config file's folder,
# against which a relative path in the file resolves.
Check = Callable[[Any, Path], str | None]
Resolve = Callable[[Any, Path], Any]


@dataclass(frozen=True)
class SettingInfo:
    doc: str
    unit: str = ""
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    check: Check | None = None
    resolve: Resolve | None = None   # a value from the file, made absolute against the file's folder


def setting(default: Any = dataclasses.MISSING, *, doc: str, unit: str = "", choices: tuple = (),
            min: float | None = None, max: float | None = None, factory: Callable[[], Any] | None = None,
            check: Check | None = None, resolve: Resolve | None = None, repr: bool = True) -> Any:
    """A dataclass field with its documentation and its limits (`factory` for mutable defaults)."""
    info = SettingInfo(doc, unit, tuple(choices), min, max, check, resolve)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"setting": info}, repr=repr)
    return dataclasses.field(default=default, metadata={"setting": info}, repr=repr)


def info(f: dataclasses.Field) -> SettingInfo | None:
    """The field's SettingInfo, or None for a field declared without `setting`."""
    return f.metadata.get("setting")


def per_model(*keys: str, doc: str) -> Any:
    """A field of a section some of whose settings a model may set for itself: one table per model
    under the field's name, [<section>.<field>.<model>] (`models` in most sections; the worker's
    `models` is the list it serves, so its review budget's tables are [worker.review.<model>]),
    setting any of `keys` (fields of the same section). The loader checks each value as it checks
    the section's own (flywheel/config.py); `for_model` applies them."""
    return dataclasses.field(default_factory=dict, metadata={"setting": SettingInfo(doc), "per_model": keys})


def per_model_keys(f: dataclasses.Field) -> tuple[str, ...]:
    """The settings a model may set for itself through this field (none: not a `per_model` field)."""
    return f.metadata.get("per_model", ())


def for_model(settings: Any, model: str) -> Any:
    """A section's settings as `model` has them: its own tables' values over the section's."""
    own = {key: value for f in dataclasses.fields(settings) if per_model_keys(f)
           for key, value in getattr(settings, f.name).get(model, {}).items()}
    return dataclasses.replace(settings, **own) if own else settings
