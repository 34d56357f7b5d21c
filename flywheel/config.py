"""Configuration: defaults, then a TOML file, then FLYWHEEL_* environment variables, then flags.

The file is `--config PATH`, else $FLYWHEEL_CONFIG, else ./flywheel.toml if present. Each
package owns the dataclass of its settings; this module only fills them. A field `f` of section
`s` reads the environment variable FLYWHEEL_S_F (and a documented short alias where the field
says so, such as FLYWHEEL_BOOTSTRAP).

A secret field (typed `Secret`, e.g. kafka.sasl_password) also reads `<field>_file` from the
file's table or FLYWHEEL_S_F_FILE from the environment: the path of a file holding the value
(a mounted Kubernetes secret; one trailing newline is dropped). No error ever shows the value
of a setting that could hold a secret: only numbers and switches are echoed back.
"""
import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from schemas.secret import REDACTED, Secret
from streams.settings import KafkaSettings

from flywheel.errors import BadInput

ALIASES = {  # short env names people expect, mapped to section.field
    "FLYWHEEL_BOOTSTRAP": ("kafka", "bootstrap"),
    "FLYWHEEL_SCHEMA_REGISTRY_URL": ("kafka", "schema_registry_url"),
    "FLYWHEEL_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "FLYWHEEL_CASSANDRA_HOSTS": ("store", "cassandra_hosts"),
}


class ConfigError(BadInput):
    """The configuration (file, environment, flags) is wrong: the message names the key."""


@dataclass
class Config:
    data_dir: Path = Path(".flywheel")
    metrics_port: int = 9400
    metrics_addr: str = "127.0.0.1"   # where /metrics listens; 0.0.0.0 only where asked (Kubernetes)
    # This process's stable id when its supervisor gives one (the stack per process slot, the
    # pod name on Kubernetes); empty: each process its own (see processors/runtime/identity.py).
    instance_id: str = ""
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)     # may hold secrets as text
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    _built: list = field(default_factory=list, repr=False)

    def section(self, cls: type, name: str, **overrides):
        """Build a package's settings dataclass from the file's [name] table, env and overrides."""
        built = build(cls, name, self.raw.get(name, {}), self.env, overrides)
        self._built.append(built)
        return built

    def secret_values(self) -> list[str]:
        """Every secret this config has handed out (kafka's and each section built so far), for
        scrubbing text that could have picked one up from a library (log lines, errors)."""
        found = [getattr(s, f.name) for s in (self.kafka, *self._built) for f in dataclasses.fields(s)]
        overrides = [str(v) for k, v in self.kafka.client_overrides.items() if "password" in k or "secret" in k]
        return sorted({v.reveal() for v in found if isinstance(v, Secret) and v} | {v for v in overrides if v},
                      key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self.secret_values():
            text = text.replace(value, REDACTED)
        return text


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                **overrides) -> Config:
    env = dict(os.environ if env is None else env)
    raw = _read_file(path or env.get("FLYWHEEL_CONFIG") or _default_file())
    top = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    data_dir = Path(_pick(overrides.pop("data_dir", None), env.get("FLYWHEEL_DATA_DIR"),
                          top.get("data_dir"), ".flywheel"))
    metrics_port = int(_pick(overrides.pop("metrics_port", None), env.get("FLYWHEEL_METRICS_PORT"),
                             top.get("metrics_port"), 9400))
    metrics_addr = str(_pick(overrides.pop("metrics_addr", None), env.get("FLYWHEEL_METRICS_ADDR"),
                             top.get("metrics_addr"), "127.0.0.1"))
    kafka = build(KafkaSettings, "kafka", raw.get("kafka", {}), env, overrides.pop("kafka", {}))
    instance_id = str(_pick(overrides.pop("instance_id", None), env.get("FLYWHEEL_INSTANCE_ID"),
                            top.get("instance_id"), ""))
    return Config(data_dir=data_dir, metrics_port=metrics_port, metrics_addr=metrics_addr, instance_id=instance_id,
                  kafka=kafka, raw=raw, env=env)


def build(cls: type, section: str, table: Mapping[str, Any], env: Mapping[str, str],
          overrides: Mapping[str, Any] | None = None):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    secrets = {n for n in names if hints[n] is Secret}
    unknown = set(table) - names - {f"{n}_file" for n in secrets}
    if unknown:
        raise ConfigError(f"[{section}] has unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(names | {f'{n}_file' for n in secrets}))}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        var = f"FLYWHEEL_{section}_{f.name}".upper()
        alias = next((a for a, target in ALIASES.items() if target == (section, f.name)), None)
        raw_env = env.get(var, env.get(alias) if alias else None)
        over = (overrides or {}).get(f.name)
        if over is not None:
            values[f.name] = over
        elif raw_env is not None:
            values[f.name] = _coerce(raw_env, hints[f.name], var)
        elif f.name in secrets and env.get(f"{var}_FILE"):
            values[f.name] = _secret_file(env[f"{var}_FILE"], f"{var}_FILE")
        elif f.name in table:
            values[f.name] = table[f.name]
        elif f.name in secrets and f"{f.name}_file" in table:
            values[f.name] = _secret_file(table[f"{f.name}_file"], f"[{section}] {f.name}_file")
        if f.name in secrets and not isinstance(values.get(f.name, Secret()), Secret):
            values[f.name] = Secret(str(values[f.name]))
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[{section}] {e}") from None


def _secret_file(path: str, where: str) -> Secret:
    try:
        return Secret(Path(path).read_text().removesuffix("\n"))
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {path}: {e.strerror}") from None


def _coerce(text: str, kind: Any, var: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
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
    except (ValueError, json.JSONDecodeError) as e:
        # Numbers and switches are echoed; text and tables could hold a password, so never.
        shown = f"={text!r}" if kind in (int, float, bool) else ""
        where = f" ({e.msg} at character {e.pos})" if isinstance(e, json.JSONDecodeError) else ""
        raise ConfigError(f"{var}{shown} is not a valid {getattr(kind, '__name__', kind)}{where}") from None
    if kind is Secret:
        return Secret(text)
    return text


def _read_file(path: str | Path | None) -> dict:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}") from e


def _default_file() -> str | None:
    return "flywheel.toml" if Path("flywheel.toml").is_file() else None


def _pick(*candidates):
    return next(c for c in candidates if c is not None)
