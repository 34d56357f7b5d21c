"""The settings reference, rendered from the settings dataclasses themselves (each field's
`flywheel.schemas.setting` metadata: doc, unit, limits), so the reference cannot drift from the code.
`markdown()` is what docs/hooks.py puts into docs/reference/settings.md at build time."""
import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.config import alias_of, env_name, is_secret, is_table
from flywheel.schemas.setting import info
from flywheel.sections import SECTIONS
from flywheel.settings import TopSettings


@dataclass(frozen=True)
class Row:
    key: str
    kind: str
    unit: str
    default: str
    env: str
    doc: str


def markdown() -> str:
    """Every section, field, type, unit, default, environment variable and doc as Markdown."""
    parts = [_table("Top level (no table)", "", TopSettings)]
    parts += [_table(f"[{name}]", name, cls) for name, cls in _sections()]
    return "\n".join(parts)


def rows(section: str, cls: type) -> list[Row]:
    hints = typing.get_type_hints(cls)
    return [_row(section, f, hints[f.name]) for f in dataclasses.fields(cls) if not is_table(hints[f.name])]


def _sections() -> Iterator[tuple[str, type]]:
    """Each section, then the tables nested in it ([store], [store.sqlite], [store.cassandra])."""
    for name, cls in SECTIONS.items():
        yield name, cls
        hints = typing.get_type_hints(cls)
        yield from ((f"{name}.{f.name}", hints[f.name]) for f in dataclasses.fields(cls) if is_table(hints[f.name]))


def _table(title: str, section: str, cls: type) -> str:
    lines = [f"## `{title}`", "", (cls.__doc__ or "").strip(), "",
             "| key | type | unit | default | environment | description |", "|---|---|---|---|---|---|"]
    lines += [f"| `{r.key}` | {r.kind} | {r.unit} | {r.default} | {r.env} | {r.doc} |" for r in rows(section, cls)]
    return "\n".join(lines) + "\n"


def _row(section: str, f: dataclasses.Field, kind: Any) -> Row:
    setting = info(f)
    env = f"`{env_name(section, f.name)}`"
    alias = alias_of(section, f.name)
    env += f", `{alias}`" if alias else ""
    env += f", `{env_name(section, f.name)}_FILE`" if is_secret(kind) else ""
    return Row(f.name, _kind(kind, setting), setting.unit, _default(f, kind), env, _cell(setting.doc))


def _kind(kind: Any, setting) -> str:
    name = getattr(kind, "__name__", None) if typing.get_origin(kind) is None else None
    text = "secret" if is_secret(kind) else (name or str(kind).replace("typing.", ""))
    if setting.choices:
        text += ": " + ", ".join(f'`"{c}"`' for c in setting.choices)
    bounds = [f"≥ {setting.min:g}" if setting.min is not None else "",
              f"≤ {setting.max:g}" if setting.max is not None else ""]
    return _cell(" ".join([text, *filter(None, bounds)]))


def _default(f: dataclasses.Field, kind: Any) -> str:
    if is_secret(kind):
        return "unset"
    if f.default_factory is not dataclasses.MISSING:
        # A computed default (an instance id per process) has no fixed value to show.
        return f"`{f.default_factory()!r}`" if f.default_factory in (list, dict) else "per process"
    return f'`"{f.default}"`' if isinstance(f.default, (str, Path)) else f"`{f.default!r}`"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    print(markdown())
