"""Every code block in the README and the docs site runs, so neither can rot. A block's fence
language says how:

- python: run as written (a namespace of its own) against one embedded stack for all of them
  (broker, registry and store in a data dir, the demo's churn model, a worker); the trainer
  plugin in Your own model is also trained through the retrainer's plugin loader;
- sh: `flywheel` commands, run against that stack; each must exit 0;
- console: commands a test cannot run (they start a stack, need Docker, a cluster or the
  reader's files): each `flywheel` command must parse with the real CLI parser, each
  repository path it names must exist, and each option of a benchmark script must be one that
  script defines;
- toml: loads as a configuration file;
- text: output or a synopsis, shown as printed.

Any other language fails, so a new block has to choose.
"""
import ast
import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.models import ModelRegistry
from flywheel.processors.simulator.bootstrap import ensure_model
from flywheel.processors.simulator.concept import Concept

from flywheel.cli import build_parser
from flywheel.cli import main as flywheel_main
from flywheel.config import load_config
from tests.test_trainer_plugin import served_accuracy
from tests.test_worker_support import RunningWorker

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = {"python", "sh", "console", "toml", "text"}
# The first word of a path in the repository, as blocks name them (`./bin/up`, `infra/k8s`).
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
REPOSITORY_PATH = re.compile(r"^(\./)?(bin|infra|benchmarks|tests|docs|schemas)/")


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    language: str
    code: str

    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def blocks(document: Path) -> list[Block]:
    text = document.read_text()
    return [Block(document, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
            for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)]


def every_block(language: str) -> list[Block]:
    return [b for d in DOCUMENTS for b in blocks(d) if b.language == language]


def commands(block: Block) -> list[list[str]]:
    """Each line's words, comments and leading VAR=value assignments left out."""
    lines = (shlex.split(line, comments=True) for line in block.code.splitlines())
    return [words for words in (list(itertools.dropwhile(ASSIGNMENT.match, ws)) for ws in lines) if words]


def options(words: list[str]) -> list[str]:
    """The --options among a command's words, optional ones written `[--option N]` included."""
    return [w.strip("[]").split("=")[0] for w in words if w.strip("[]").startswith("--")]


def test_every_block_says_how_it_is_checked():
    unknown = [f"{d.relative_to(ROOT)}:{b.line} ```{b.language}" for d in DOCUMENTS for b in blocks(d)
               if b.language not in LANGUAGES]
    assert not unknown, f"fence languages must be one of {sorted(LANGUAGES)}: {unknown}"


def test_the_documents_code_runs_against_a_live_stack(kafka, registry, data_dir, make_topics, monkeypatch, capsys):
    make_topics("churn")
    models = ModelRegistry(kafka, registry, data_dir, actor="test")
    ensure_model(models, open_store(StoreSettings(), data_dir), "churn", Concept(), rows=3000)
    for name, value in {"FLYWHEEL_DATA_DIR": data_dir, "FLYWHEEL_BOOTSTRAP": kafka.bootstrap,
                        "FLYWHEEL_TOPIC_PREFIX": kafka.topic_prefix}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.chdir(data_dir)  # no flywheel.toml of the clone's own
    captured = {}
    with RunningWorker(kafka, registry, data_dir):
        for document in DOCUMENTS:
            for block in (b for b in blocks(document) if b.language == "python"):
                exec(compile(block.code, block.where(), "exec"), {"__name__": "docs"})
            for block in (b for b in blocks(document) if b.language == "sh"):
                for words in commands(block):
                    assert words[0] == "flywheel", f"{block.where()}: sh blocks hold flywheel commands only"
                    assert flywheel_main(words[1:]) == 0, f"{block.where()}: {shlex.join(words)} failed"
            captured[document.relative_to(ROOT).as_posix()] = capsys.readouterr()

    subscribed, predicted, rejected = captured["README.md"].out.splitlines()
    request_id, label, _ = subscribed.split(" ", 2)
    assert len(request_id) == 32 and label in ("churn", "stay")
    assert predicted.split() == [predicted.split()[0], "v1"] and predicted.split()[0] in ("churn", "stay")
    assert rejected == "rejected: missing_feature feature 'x1': required and missing"

    # Getting started lists the demo's model and its topics with their record types (tables go to stderr).
    shown = captured["docs/getting-started.md"].err
    assert "churn" in shown and "v1" in shown and "InferenceRequest" in shown

    # Your own model: the pipeline registered, converted faithfully, served by the worker.
    imported, answered = captured["docs/guide/own-model.md"].out.splitlines()
    assert imported == "('0', '1') 569"
    label, scores = answered.split(" ", 1)
    assert label in ("0", "1") and set(ast.literal_eval(scores)) == {"0", "1"}
    assert open_store(StoreSettings(), data_dir).get_profile("tumour", "v1") is not None  # drift reference


def test_the_trainer_plugin_in_your_own_model_trains_a_servable_candidate(tmp_path):
    [plugin] = [b.code for b in blocks(ROOT / "docs" / "guide" / "own-model.md") if "def train(" in b.code]
    assert served_accuracy(plugin, tmp_path) > 0.8


@pytest.mark.parametrize("block", every_block("console"), ids=Block.where)
def test_console_commands_parse_and_name_real_paths(block):
    parser = build_parser()
    for words in commands(block):
        if Path(words[0]).name == "flywheel":
            try:
                parser.parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"{block.where()}: `{shlex.join(words)}` is not a valid flywheel command")
        missing = [w for w in words if REPOSITORY_PATH.match(w) and not (ROOT / w).exists()]
        assert not missing, f"{block.where()}: no such path in the repository: {missing}"
        for script in (ROOT / w for w in words if w.startswith("benchmarks/") and w.endswith(".py")):
            unknown = [o for o in options(words) if f'add_argument("{o}"' not in script.read_text()]
            assert not unknown, f"{block.where()}: {script.name} has no options {unknown}"


@pytest.mark.parametrize("block", every_block("toml"), ids=Block.where)
def test_toml_blocks_load_as_configuration(block, tmp_path):
    path = tmp_path / "flywheel.toml"
    path.write_text(block.code)
    load_config(path, env={})
