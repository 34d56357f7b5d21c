"""Subcommands: one module each, each with `register(subparsers)` that sets `handler(args, config)`."""
import argparse
import importlib
import pkgutil
from types import ModuleType

from flywheel.extras import missing_extra, register_unavailable

# a module whose name cannot be its command's (`import` is a keyword)
COMMAND_OF = {"import_model": "import"}


def discover() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in _module_names()]


def register_all(subparsers: argparse._SubParsersAction, only: str | None = None) -> None:
    """Register every command (or `only` the one named, when it is one); one whose extra is not
    installed is listed and says so when run."""
    names = _module_names()
    wanted = [n for n in names if COMMAND_OF.get(n, n) == only]
    for name in wanted or names:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            advice = missing_extra(e)
            if advice is None:
                raise
            register_unavailable(subparsers, COMMAND_OF.get(name, name), advice)
            continue
        module.register(subparsers)


def _module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
