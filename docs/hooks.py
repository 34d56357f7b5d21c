"""MkDocs hooks: the CLI reference is rendered from the argparse parsers at build time, so it
cannot drift from what `flywheel --help` prints."""
import argparse
import functools

from flywheel.cli import build_parser

CLI_PAGE = "reference/cli.md"
CLI_MARKER = "<!-- cli-reference -->"
HELP_WIDTH = 100       # columns of the rendered help, fixed so the page does not depend on the terminal


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != CLI_PAGE:
        return markdown
    return markdown.replace(CLI_MARKER, cli_reference(build_parser()))


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """One section per command and subcommand, each its `--help` as the terminal shows it."""
    return "\n".join(_sections(parser, level=2))


def _sections(parser: argparse.ArgumentParser, level: int):
    parser.formatter_class = functools.partial(parser.formatter_class, width=HELP_WIDTH)
    yield f"{'#' * level} `{parser.prog}`\n\n```text\n{parser.format_help().rstrip()}\n```\n"
    for child in _subparsers(parser):
        yield from _sections(child, level + 1 if level < 4 else level)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [child for group in groups for child in dict.fromkeys(group.choices.values())]
