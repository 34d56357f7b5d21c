"""Subcommands: one module each, each with `register(subparsers)` that sets `handler(args, config)`."""
import importlib
import pkgutil
from types import ModuleType


def discover() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{m.name}")
            for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
            if not m.name.startswith("_")]
