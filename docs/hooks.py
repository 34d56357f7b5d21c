"""MkDocs hooks: reference pages rendered from the code at build time, so they cannot drift from
what the code does. A generated page holds a marker comment; the hook replaces it with Markdown
made by a function of no arguments (GENERATED below: one entry per page)."""
import argparse
import functools
from collections.abc import Callable

from flywheel.cli import build_parser

HELP_WIDTH = 100       # columns of the rendered help, fixed so the page does not depend on the terminal


def cli_reference() -> str:
    """One section per command and subcommand, each its `--help` as the terminal shows it."""
    return "\n".join(_sections(build_parser(), level=2))


# page -> (marker in the page, what replaces it)
GENERATED: dict[str, tuple[str, Callable[[], str]]] = {
    "reference/cli.md": ("<!-- cli-reference -->", cli_reference),
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri not in GENERATED:
        return markdown
    marker, render = GENERATED[page.file.src_uri]
    if marker not in markdown:
        raise ValueError(f"{page.file.src_uri}: the marker {marker} is missing")
    return markdown.replace(marker, render())


def _sections(parser: argparse.ArgumentParser, level: int):
    parser.formatter_class = functools.partial(parser.formatter_class, width=HELP_WIDTH)
    yield f"{'#' * level} `{parser.prog}`\n\n```text\n{parser.format_help().rstrip()}\n```\n"
    for child in _subparsers(parser):
        yield from _sections(child, level + 1 if level < 4 else level)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [child for group in groups for child in dict.fromkeys(group.choices.values())]
