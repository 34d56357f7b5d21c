"""Every command's --help ends with examples, and every example parses with today's flags (so
an example cannot outlive a renamed option)."""
import argparse
import shlex

import pytest

from flywheel.cli import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _invocations(help_text: str) -> list[list[str]]:
    """The `flywheel ...` argument lists of the examples section (comments, env prefixes and the
    other sides of pipes dropped)."""
    section = help_text.split("\nexamples:\n", 1)[1]
    out = []
    for line in section.splitlines():
        for part in line.split(" # ")[0].replace("&&", "|").split("|"):
            words = shlex.split(part)
            if "flywheel" in words:
                out.append(words[words.index("flywheel") + 1:])
    return out


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_help_has_examples_that_parse(name, capsys):
    help_text = _commands()[name].format_help()
    assert "\nexamples:\n" in help_text, f"`flywheel {name} --help` has no examples"
    invocations = _invocations(help_text)
    assert invocations and all(words[0] == name for words in invocations), invocations
    for words in invocations:
        build_parser().parse_args(words)  # SystemExit (usage error) fails the test


def test_retrainer_help_names_every_trainer_form_the_retrainer_accepts():
    help_text = " ".join(_commands()["retrainer"].format_help().split())   # argparse wraps lines
    for form in ("reference:mlp", "reference:gbt", "sklearn:module:function", "sklearn:path/to/file.py:function",
                 "python:module:function", "command:"):
        assert form in help_text, form


def test_import_help_asks_for_rows_the_model_was_not_trained_on():
    help_text = " ".join(_commands()["import"].format_help().split())
    assert "training data" not in help_text
    assert "--sample CSV validation rows" in help_text and "not trained on" in help_text
