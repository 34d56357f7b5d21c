"""The own-model walkthrough (docs/guide/own-model.md, "The whole loop, step by step") run as the
page writes it, on a live stack: its Python writes the pipeline, sample and traffic; the page's
trainer plugin is saved as my_trainer.py; each console line runs (`export` sets the environment,
`flywheel up` starts the stack on the test's free ports, every other `flywheel` command runs
through the CLI's main()). Between the page's blocks the test waits for what the page says comes
next: the detection, the retrain request and its canary, the promotion. If a step of the page
breaks, this test does."""
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flywheel.feature_store import StoreSettings, open_store
from flywheel.processors.models import EventLog

from flywheel.cli import main
from tests.ports import stack_ports
from tests.test_readme import ROOT, blocks

PAGE = ROOT / "docs" / "guide" / "own-model.md"
SECTION = "## The whole loop, step by step"


def walkthrough() -> tuple[str, list[str]]:
    """The section's Python, and its console blocks' command lines in order."""
    text = PAGE.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    inside = [b for b in blocks(PAGE) if start < text.index(b.code) < end]
    [python] = [b.code for b in inside if b.language == "python"]
    return python, [b.code for b in inside if b.language == "console"]


def lines(console: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in console.splitlines() if line.startswith("$ ")]


def wait_for(condition, what: str, up: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert up.poll() is None, f"flywheel up exited ({up.returncode}) while waiting for {what}"
        found = condition()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"no {what} within {timeout:g}s")


def run(words: list[str]) -> None:
    assert words[0] == "flywheel", words
    assert main(words[1:]) == 0, f"`{shlex.join(words)}` failed"


def events(folder: Path, kind: str) -> list[dict]:
    return [e for e in EventLog(folder / ".flywheel").events("loans") if e["kind"] == kind]


def test_the_own_model_walkthrough_runs_on_a_live_stack(tmp_path, monkeypatch, capsys):
    python, (start, traffic, more, show) = walkthrough()
    folder = tmp_path / "loans"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in [k for k in os.environ if k.startswith("FLYWHEEL_") and k not in (
            "FLYWHEEL_CONSOLE_PORT", "FLYWHEEL_KAFKA_EMBEDDED_REGISTRY_PORT", "FLYWHEEL_KAFKA_SESSION_TIMEOUT_MS")
            and not k.endswith("_GROUP_ID")]:
        monkeypatch.delenv(name)                    # the reader's defaults, but for the test's own ports
    exec(compile(python, f"{PAGE}:{SECTION}", "exec"), {"__name__": "walkthrough"})
    [plugin] = [b.code for b in blocks(PAGE) if "def train(" in b.code]
    (folder / "my_trainer.py").write_text(plugin)

    ports = stack_ports()
    up = None
    for words in lines(start):
        if words[0] == "export":
            name, value = words[1].split("=", 1)
            monkeypatch.setenv(name, value)
        else:
            assert words[:2] == ["flywheel", "up"], words
            up = subprocess.Popen([sys.executable, "-m", *words, *ports.up_args()], env=dict(os.environ),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
    monkeypatch.setenv("FLYWHEEL_KAFKA_EMBEDDED_PORT", str(ports.broker))    # what the reader's default is
    try:
        wait_for(lambda: (folder / ".flywheel" / "stack.json").exists(), "stack", up, 90)
        for words in lines(traffic):
            run(words)
        imported = capsys.readouterr().err
        assert "6 numeric, 3 categorical features" in imported, imported      # the codes, as categories
        assert "answers the 1,000 sample rows as the original model's" in imported

        # The page: the trigger logs the rise, asks for a retrain for error_change, the retrainer
        # trains the plugin and deploys a canary.
        trigger_log = folder / ".flywheel" / "trigger.log"
        wait_for(lambda: "error of loans v1 rose" in trigger_log.read_text(), "detection", up, 90)
        [canary] = wait_for(lambda: events(folder, "CANARY"), "canary", up, 120)
        for words in lines(more):
            run(words)
        [promoted] = wait_for(lambda: events(folder, "PROMOTED"), "promotion", up, 120)
        assert promoted["live_version"] == canary["canary_version"]
        for words in lines(show):
            run(words)
        shown = capsys.readouterr().err
    finally:
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=60)
    assert up.returncode == 0, err[-2000:]

    # The loop's own record of it: the request's rule and evidence, the trainer, the lineage.
    detected = re.search(r"error of loans v1 rose from ([\d.]+) to ([\d.]+)", trigger_log.read_text())
    assert float(detected.group(1)) < 0.1 and float(detected.group(2)) > 0.3
    with open_store(StoreSettings(), folder / ".flywheel") as store:
        [retrain] = store.retrains("loans")
    # The after-labels come all at once, so the accuracy rule may be met in the same round.
    assert "error_change" in retrain.reasons and retrain.new_version == promoted["live_version"]
    assert canary["reason"].startswith("asked for ") and "error_change" in canary["reason"].split(":")[0]
    assert canary["evidence"]["request.change.labels"] >= 150
    version = promoted["live_version"]
    assert f"loans {version}" in shown
    assert f"parent: v1; retrain {retrain.retrain_id} for {', '.join(retrain.reasons)}" in shown
    assert "trainer: sklearn:" in shown and "my_trainer.py:train (code sha256 " in shown
    assert re.search(r"dataset sha256: [0-9a-f]{64}", shown)
    assert "elevel [0, 1, 2, 3, 4], car [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11," in shown     # codes, as categories
