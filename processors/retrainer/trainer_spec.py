"""A trainer setting (`reference:mlp`, `sklearn:file.py:train`, `python:module:function`,
`command:...`), parsed and checked without importing any training library, so the configuration
can be checked up front by every command, a client's included (see trainers.py for what each
kind does)."""
import hashlib
import importlib
import importlib.util
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from flywheel.errors import UserError

REFERENCE_KINDS = ("mlp", "gbt")
FORMS = "reference:mlp|gbt, sklearn:module:function, python:module:function or command:..."


class TrainerFailed(UserError):
    """The configured trainer (the user's plugin, command or spec) cannot load, fails or writes no
    model: the message names it and why."""


@dataclass(frozen=True)
class TrainerSpec:
    kind: str      # reference | sklearn | python | command
    target: str    # the mlp|gbt kind, module:function, path/to/file.py:function, or the command


def parse(spec: str) -> TrainerSpec:
    kind, _, rest = spec.partition(":")
    if kind == "reference":
        return TrainerSpec(kind, rest or "mlp")
    if (kind in ("python", "sklearn") and ":" in rest) or (kind == "command" and rest.strip()):
        return TrainerSpec(kind, rest)
    raise TrainerFailed(f"trainer {spec!r} must be {FORMS}")


def plugin_function(spec: TrainerSpec):
    """module:function, or path/to/file.py:function (no PYTHONPATH needed)."""
    where, _, name = spec.target.rpartition(":")
    try:
        if where.endswith(".py"):
            loader = importlib.util.spec_from_file_location(Path(where).stem, where)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        return getattr(module, name)
    except (ImportError, AttributeError, FileNotFoundError) as e:
        raise TrainerFailed(f"trainer {spec.kind}:{spec.target} cannot be loaded: {e}") from e


def resolve_trainer(spec: str, base: Path) -> str:
    """A `sklearn:` or `python:` plugin file named relative to the config file, made absolute
    against its folder (`base`), so every process finds it wherever it was started."""
    if not isinstance(spec, str):
        return spec
    kind, _, rest = spec.partition(":")
    where, _, name = rest.rpartition(":")
    if kind not in ("sklearn", "python") or not where.endswith(".py") or Path(where).is_absolute():
        return spec
    return f"{kind}:{base / where}:{name}"


def trainer_problem(spec: str, base: Path) -> str | None:
    """What is wrong with a trainer setting, found before any retrain: an unknown kind, a plugin
    that does not import or lacks its function, a command that is not on the PATH."""
    try:
        parsed = parse(spec)
        if parsed.kind == "reference" and parsed.target not in REFERENCE_KINDS:
            return f"reference trainer {parsed.target!r} is not one of {', '.join(REFERENCE_KINDS)}"
        if parsed.kind in ("sklearn", "python"):
            plugin_function(parsed)
        if parsed.kind == "command" and not shutil.which(shlex.split(parsed.target)[0]):
            return f"trainer command {shlex.split(parsed.target)[0]!r} is not on the PATH"
    except TrainerFailed as e:
        return str(e)
    return None


def code_sha256(spec: str) -> str:
    """sha256 of the code a trainer setting runs: the plugin file, the module's file, the command's
    program, or the built-in trainer's module; "" when it cannot be found (lineage still records
    the setting)."""
    parsed = parse(spec)
    if parsed.kind == "reference":
        path = importlib.util.find_spec("flywheel.processors.training.train").origin
    elif parsed.kind == "command":
        path = shutil.which(shlex.split(parsed.target)[0])
    else:
        where = parsed.target.rpartition(":")[0]
        path = where if where.endswith(".py") else _module_file(where)
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""
    except OSError:
        return ""


def _module_file(name: str) -> str | None:
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return found.origin if found else None
