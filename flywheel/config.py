"""Configuration: defaults, then a TOML file, then FLYWHEEL_* environment variables, then flags.

The file is `--config PATH`, else $FLYWHEEL_CONFIG, else ./flywheel.toml if present. Each
package owns the dataclass of its settings (flywheel/sections.py lists them); this module only
fills and checks them. A field `f` of section `s` reads the environment variable FLYWHEEL_S_F (a
table nested in a section, such as [store.cassandra], reads FLYWHEEL_STORE_CASSANDRA_F), and a
documented short alias where one exists (such as FLYWHEEL_BOOTSTRAP).

`load_config` checks the whole configuration before any command does anything: unknown sections
and keys, FLYWHEEL_<SECTION>_* variables no setting reads, types, ranges, choices and each
field's own check (a trainer plugin that must import).
Every problem is one line of one ConfigError. A relative path that a field resolves (a trainer
plugin file) is relative to the config file's folder, so it means the same wherever a process
starts.

A secret field (typed `Secret`, e.g. kafka.sasl_password) also reads `<field>_file` from the
file's table or FLYWHEEL_S_F_FILE from the environment: the path of a file holding the value
(a mounted Kubernetes secret; one trailing newline is dropped). No error ever shows the value
of a setting that could hold a secret: only numbers, switches and choices are echoed back.
"""
import dataclasses
import difflib
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.errors import BadInput
from flywheel.schemas.secret import REDACTED, Secret
from flywheel.schemas.setting import info, per_model_keys
from flywheel.sections import SECTIONS
from flywheel.settings import TopSettings
from flywheel.streams.settings import KafkaSettings

ALIASES = {  # short env names people expect, mapped to section.field
    "FLYWHEEL_BOOTSTRAP": ("kafka", "bootstrap"),
    "FLYWHEEL_SCHEMA_REGISTRY_URL": ("kafka", "schema_registry_url"),
    "FLYWHEEL_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "FLYWHEEL_CASSANDRA_HOSTS": ("store.cassandra", "hosts"),
}
ECHOED = (int, float, bool)   # kinds whose values an error may show (text could be a password)


class ConfigError(BadInput):
    """Every problem found in the configuration, one line each."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class Config:
    data_dir: Path = Path(".flywheel")
    metrics_port: int = 9400
    metrics_addr: str = "127.0.0.1"
    instance_id: str = ""                    # see TopSettings.instance_id
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    path: Path | None = None                 # the config file read (absolute), handed to child processes
    raw: dict[str, Any] = field(default_factory=dict, repr=False)     # may hold secrets as text
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    _built: list = field(default_factory=list, repr=False)

    @property
    def base(self) -> Path:
        """The folder a relative path in the file is relative to."""
        return self.path.parent if self.path else Path.cwd()

    def section(self, cls: type, name: str, **overrides):
        """Build a package's settings dataclass from the file's [name] table, env and overrides."""
        built = build(cls, name, self.raw.get(name, {}), self.env, overrides, self.base)
        self._built.append(built)
        return built

    def secret_values(self) -> list[str]:
        """Every secret this config has handed out (kafka's and each section built so far), for
        scrubbing text that could have picked one up from a library (log lines, errors)."""
        found = [v for s in (self.kafka, *self._built) for v in _leaf_values(s)]
        overrides = [str(v) for k, v in self.kafka.client_overrides.items() if "password" in k or "secret" in k]
        return sorted({v.reveal() for v in found if isinstance(v, Secret) and v} | {v for v in overrides if v},
                      key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self.secret_values():
            text = text.replace(value, REDACTED)
        return text


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                **overrides) -> Config:
    """Read and check the whole configuration; overrides are top-level fields (data_dir=...) or
    a section's fields as a dict (kafka={"bootstrap": ...}), as flags give them."""
    env = dict(os.environ if env is None else env)
    file = _config_file(path or env.get("FLYWHEEL_CONFIG") or _default_file())
    raw = _read_file(file)
    base = file.parent if file else Path.cwd()
    problems: list[str] = []
    top_table = {k: v for k, v in raw.items() if not isinstance(v, dict) or k not in SECTIONS}
    top_overrides = {k: v for k, v in overrides.items() if not isinstance(v, dict) and v is not None}
    top = _build(TopSettings, "", top_table, env, top_overrides, base, problems)
    built = {name: _build(cls, name, _table(raw, name, problems), env, overrides.get(name) or {}, base, problems)
             for name, cls in SECTIONS.items()}
    problems.extend(_unknown_env(env))
    if problems:
        raise ConfigError(problems)
    return Config(data_dir=top.data_dir, metrics_port=top.metrics_port, metrics_addr=top.metrics_addr,
                  instance_id=top.instance_id, kafka=built["kafka"], path=file, raw=raw, env=env)


def build(cls: type, section: str, table: Mapping[str, Any], env: Mapping[str, str],
          overrides: Mapping[str, Any] | None = None, base: Path | None = None):
    """One section's settings; a ConfigError names every problem with them."""
    problems: list[str] = []
    built = _build(cls, section, table, env, overrides or {}, base or Path.cwd(), problems)
    if problems:
        raise ConfigError(problems)
    return built


def env_name(section: str, name: str) -> str:
    """FLYWHEEL_<SECTION>_<FIELD>, the section's dots as underscores; top-level FLYWHEEL_<FIELD>."""
    return "_".join(["FLYWHEEL", *section.split("."), name] if section else ["FLYWHEEL", name]).upper()


def env_names() -> set[str]:
    """Every environment variable a setting reads: FLYWHEEL_CONFIG, each field's (its _FILE too
    for a secret, nested tables included) and the aliases."""
    def names(section: str, cls: type):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if is_table(hints[f.name]):
                yield from names(_join(section, f.name), hints[f.name])
            else:
                yield env_name(section, f.name)
                yield from [f"{env_name(section, f.name)}_FILE"] if is_secret(hints[f.name]) else []
    sections = [("", TopSettings), *SECTIONS.items()]
    return {"FLYWHEEL_CONFIG", *ALIASES, *(n for section, cls in sections for n in names(section, cls))}


def alias_of(section: str, name: str) -> str | None:
    return next((a for a, target in ALIASES.items() if target == (section, name)), None)


def is_secret(kind: Any) -> bool:
    return kind is Secret


def is_table(kind: Any) -> bool:
    """A field that is a table of its own ([store.cassandra]); a Secret is a dataclass but a value."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind) and kind is not Secret


def _table(raw: Mapping[str, Any], name: str, problems: list[str]) -> Mapping[str, Any]:
    table = raw.get(name, {})
    if isinstance(table, dict):
        return table
    problems.append(f"{name} must be a table ([{name}]), not a single value")
    return {}


def _build(cls: type, section: str, table: Mapping[str, Any], env: Mapping[str, str],
           overrides: Mapping[str, Any], base: Path, problems: list[str]):
    before = len(problems)
    hints = typing.get_type_hints(cls)
    problems.extend(_unknown_keys(cls, section, table, hints))
    values = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if per_model_keys(f):
            values[f.name] = _model_tables(cls, f, hints, section, table, env, base, problems)
            continue
        if is_table(kind):
            sub = table.get(f.name, {})
            values[f.name] = _build(kind, f"{section}.{f.name}", sub if isinstance(sub, dict) else {}, env,
                                    overrides.get(f.name) or {}, base, problems)
            continue
        found = _value(f, kind, section, table, env, overrides, base, problems)
        if found is not dataclasses.MISSING:
            values[f.name] = found
    if len(problems) > before:
        return None
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:   # a class's own check across fields
        problems.append(f"{_where(section, '')} {e}".strip())
        return None


def _value(f: dataclasses.Field, kind: Any, section: str, table: Mapping[str, Any], env: Mapping[str, str],
           overrides: Mapping[str, Any], base: Path, problems: list[str]) -> Any:
    """The field's value from the first source that sets it, checked; MISSING: its default."""
    var = env_name(section, f.name)
    source = var if var in env else alias_of(section, f.name)
    raw_env = env.get(source) if source else None
    where = _where(section, f.name)
    setting = info(f)
    try:
        if overrides.get(f.name) is not None:
            where = f"--{f.name.replace('_', '-')}"
            value = overrides[f.name]
        elif raw_env is not None:
            where = source
            value = _coerce(raw_env, kind)
        elif is_secret(kind) and env.get(f"{var}_FILE"):
            where = f"{var}_FILE"
            value = _secret_file(env[where])
        elif f.name in table:
            value = table[f.name]
            if setting and setting.resolve:     # it leaves a value of the wrong type to the type check
                value = setting.resolve(value, base)
        elif is_secret(kind) and table.get(f"{f.name}_file"):   # "" in a template: unset
            where = f"{where}_file"
            value = _secret_file(table[f"{f.name}_file"])
        else:
            value = dataclasses.MISSING
    except ValueError as e:
        problems.append(f"{where}: {e}")
        return dataclasses.MISSING
    if value is dataclasses.MISSING:
        return value
    problem = _problem(f, kind, value, base)
    if problem:
        shown = f" = {value!r}" if _echoed(f, kind) else ""
        problems.append(f"{where}{shown}: {problem}")
        return dataclasses.MISSING
    return _typed(value, kind)


def _model_tables(cls: type, f: dataclasses.Field, hints: dict, section: str, table: Mapping[str, Any],
                  env: Mapping[str, str], base: Path, problems: list[str]) -> dict[str, dict[str, Any]]:
    """A `per_model` field's [<section>.<field>.<model>] tables (or FLYWHEEL_<SECTION>_<FIELD>, the
    same as JSON): each key one the field allows, each value checked and typed as the section's own."""
    var, keys = env_name(section, f.name), per_model_keys(f)
    try:
        tables = _coerce(env[var], dict) if var in env else table.get(f.name, {})
    except ValueError as e:
        problems.append(f"{var}: {e}")
        return {}
    if not isinstance(tables, dict):
        problems.append(f"{_where(section, f.name)} must be tables, one per model ([{section}.{f.name}.<model>])")
        return {}
    fields = {g.name: g for g in dataclasses.fields(cls)}
    found: dict[str, dict[str, Any]] = {}
    for model, own in tables.items():
        where = _join(section, f"{f.name}.{model}")
        if not isinstance(own, dict):
            problems.append(f"{model} must be a table ([{where}]), not a single value")
            continue
        problems.extend(f"[{where}] {key} is not a setting a model may set for itself (those: {', '.join(keys)})"
                        for key in sorted(set(own) - set(keys)))
        values = {key: _value(fields[key], hints[key], where, own, {}, {}, base, problems)
                  for key in keys if key in own}
        found[model] = {key: v for key, v in values.items() if v is not dataclasses.MISSING}
    return found


def _problem(f: dataclasses.Field, kind: Any, value: Any, base: Path) -> str | None:
    """What is wrong with a value of the field (None: nothing): its type, then choices, range, own check."""
    kind = _unwrap(kind)
    if not _is_kind(value, kind):
        return f"must be {_kind_name(kind)}, not {_kind_name(type(value))}"
    setting = info(f)
    if setting is None:
        return None
    unit = f" {setting.unit}" if setting.unit else ""
    if setting.choices and str(value).upper() not in {str(c).upper() for c in setting.choices}:
        close = difflib.get_close_matches(str(value), [str(c) for c in setting.choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"must be one of {', '.join(repr(c) for c in setting.choices)}{hint}"
    if setting.min is not None and value < setting.min:
        return f"is below its minimum {setting.min:g}{unit}"
    if setting.max is not None and value > setting.max:
        return f"is above its maximum {setting.max:g}{unit}"
    return setting.check(value, base) if setting.check else None


# Settings renamed since a release: a configuration that still uses the old name is refused with
# the new one, not with a guess at the closest spelling.
RENAMED = {("monitor", "grace_seconds"): "allowed_lateness_seconds"}


def _unknown_env(env: Mapping[str, str]) -> list[str]:
    """A FLYWHEEL_<SECTION>_* variable no setting reads: a typo, or a name from before a rename
    (FLYWHEEL_STORE_KEYSPACE is FLYWHEEL_STORE_CASSANDRA_KEYSPACE), which would be ignored."""
    known = env_names()
    problems = []
    for name in sorted(env):
        prefix = next((env_name(s, "") for s in SECTIONS if name.startswith(env_name(s, ""))), None)
        if prefix and name not in known:
            # A key that moved into a nested table keeps its name: FLYWHEEL_STORE_<TABLE>_<KEY>.
            moved = sorted(k for k in known if k.startswith(prefix) and k.endswith(name.removeprefix(prefix[:-1])))
            close = moved or difflib.get_close_matches(name, sorted(known), n=1)
            renamed = [env_name(s, new) for (s, old), new in RENAMED.items() if env_name(s, old) == name]
            if renamed:
                problems.append(f"{name} was renamed: it is {renamed[0]} now")
                continue
            problems.append(f"{name} is not a setting" + (f" (did you mean {close[0]}?)" if close else ""))
    return problems


def _unknown_keys(cls: type, section: str, table: Mapping[str, Any], hints: dict) -> list[str]:
    fields = {f.name for f in dataclasses.fields(cls)}
    known = fields | {f"{n}_file" for n in fields if is_secret(hints[n])}
    nested = {n: hints[n] for n in fields if is_table(hints[n])}
    return [_unknown(key, section, known, nested, isinstance(value, dict)) for key, value in table.items()
            if key not in known and not (section == "" and key in SECTIONS)]


def _unknown(key: str, section: str, known: set[str], nested: dict[str, type], is_table: bool) -> str:
    if section == "" and is_table:
        close = difflib.get_close_matches(key, list(SECTIONS), n=1)
        hint = f"did you mean [{close[0]}]?" if close else f"sections: {', '.join(SECTIONS)}"
        return f"[{key}] is not a section ({hint})"
    if (section, key) in RENAMED:
        return f"{_where(section, key)} was renamed: it is {RENAMED[(section, key)]} now"
    for name, kind in nested.items():   # a key that moved into a backend's own table
        inner = {f.name for f in dataclasses.fields(kind)}
        moved = key if key in inner else key.removeprefix(f"{name}_")
        if moved in inner:
            return f"{_where(section, key)} is not a key here: it is [{_join(section, name)}] {moved}"
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(sorted(known))}"
    return f"{_where(section, key)} is not a setting ({hint})"


def _where(section: str, key: str) -> str:
    return f"[{section}] {key}".rstrip() if section else key


def _join(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _echoed(f: dataclasses.Field, kind: Any) -> bool:
    setting = info(f)
    return _unwrap(kind) in ECHOED or bool(setting and setting.choices)


def _unwrap(kind: Any) -> Any:
    """X | None is checked as X."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def _is_kind(value: Any, kind: Any) -> bool:
    origin = typing.get_origin(kind) or kind
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in (Path, Secret):
        return isinstance(value, (str, kind))
    if origin in (list, tuple):
        args = typing.get_args(kind)
        return isinstance(value, (list, tuple)) and (not args or all(isinstance(v, args[0]) for v in value))
    return isinstance(value, origin)


def _typed(value: Any, kind: Any) -> Any:
    kind = _unwrap(kind)
    if kind is float:
        return float(value)
    if kind is Path:
        return Path(value)
    if kind is Secret and not isinstance(value, Secret):
        return Secret(str(value))
    return value


def _kind_name(kind: Any) -> str:
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "text", Path: "a path",
             Secret: "text", list: "a list", dict: "a table"}
    return names.get(typing.get_origin(kind) or kind, getattr(kind, "__name__", str(kind)))


def _leaf_values(settings) -> list[Any]:
    """Every field's value, nested settings (such as [store.cassandra]) included."""
    values = [getattr(settings, f.name) for f in dataclasses.fields(settings)]
    return [v for value in values for v in (_leaf_values(value) if is_table(type(value)) else [value])]


def _secret_file(path: str) -> Secret:
    try:
        return Secret(Path(path).read_text().removesuffix("\n"))
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None


def _coerce(text: str, kind: Any) -> Any:
    """An environment variable's text as the field's kind; ValueError names what it should be."""
    kind = _unwrap(kind)
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes", "on")
        if kind in (int, float, str, Path):
            return kind(text)
        if list in (origin, kind) or tuple in (origin, kind):  # bare `list` too
            return [s.strip() for s in text.split(",") if s.strip()]
        if dict in (origin, kind):  # bare `dict` too
            return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"is not valid JSON ({e.msg} at character {e.pos})") from None
    except ValueError:
        # Numbers and switches are echoed; text and tables could hold a password, so never.
        shown = f"{text!r} " if kind in ECHOED else ""
        raise ValueError(f"{shown}is not {_kind_name(kind)}") from None
    return Secret(text) if kind is Secret else text


def _config_file(path: str | Path | None) -> Path | None:
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    return p.resolve()


def _read_file(path: Path | None) -> dict:
    if not path:
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e


def _default_file() -> str | None:
    return "flywheel.toml" if Path("flywheel.toml").is_file() else None
