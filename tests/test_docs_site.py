"""The docs site's generated reference pages (docs/hooks.py); `mkdocs build --strict` in bin/test
checks the rest of the site (links, anchors, nav)."""
import argparse
import importlib.util
import re
from pathlib import Path

from flywheel.cli import build_parser

HOOKS = Path(__file__).resolve().parent.parent / "docs" / "hooks.py"


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", HOOKS)
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


def every_prog(parser: argparse.ArgumentParser) -> list[str]:
    children = [c for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                for c in a.choices.values()]
    return [parser.prog, *(prog for c in children for prog in every_prog(c))]


def test_the_cli_reference_has_a_section_with_the_help_of_every_command():
    page = load_hooks().cli_reference()
    headings = {line.lstrip("#").strip().strip("`") for line in page.splitlines() if line.startswith("#")}
    assert headings == set(every_prog(build_parser()))
    assert "flywheel models promote" in headings
    assert "usage: flywheel up" in page and "--demo" in page      # the help itself, as printed


def test_every_generated_page_holds_its_marker():
    for page, (marker, _) in load_hooks().GENERATED.items():
        assert marker in (HOOKS.parent / page).read_text(), f"docs/{page} lacks {marker}"


def test_the_readmes_links_into_the_repository_exist():
    """mkdocs checks the site's links; the README and infra/README.md are outside the site."""
    for readme in (HOOKS.parents[1] / "README.md", HOOKS.parents[1] / "infra" / "README.md"):
        targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme.read_text())
        local = [t for t in targets if "://" not in t]
        assert local, f"{readme.name} links nowhere"
        missing = [t for t in local if not (readme.parent / t).exists()]
        assert not missing, f"{readme}: links to missing files {missing}"
