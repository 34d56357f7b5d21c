"""The client as a client installs it: without the heavy extras. A child process that cannot
import ONNX Runtime, scikit-learn and the rest uses `import flywheel` against the real broker and
a worker (run here, with everything installed) serving the demo's churn model."""
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from flywheel.streams.subscriber import Subscriber

from flywheel.extras import EXTRA_OF
from tests.sdk_stack import churn_served

# Importing any package an extra brings fails in the child, as it would where it is not installed.
REFUSE_EXTRAS = f"""
import importlib.abc, sys
EXTRAS = {sorted(EXTRA_OF)!r}
class RefuseExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in EXTRAS:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, RefuseExtras())
"""

CLIENT = """
import asyncio
import flywheel
import flywheel.aio

customer = {f"x{i}": 0.1 for i in range(8)} | {"plan": "pro"}
with flywheel.connect() as client, client.subscribe("churn") as predictions:
    published = client.publisher("churn").publish(customer)
    seen = next(p for p in predictions if p.value["request_id"] == published)
    answer = client.predict("churn", customer, timeout=30)
    client.label(answer["request_id"], "churn", model="churn")
    print("sync", seen.value["model_version"], answer["model_version"], sorted(client.models))

async def main():
    async with flywheel.aio.connect() as client:
        answer = await client.predict("churn", customer, timeout=30)
        await client.label(answer["request_id"], "stay", model="churn")
        print("async", answer["model_version"])

asyncio.run(main())
print("heavy", sorted(m for m in sys.modules if m.split(".")[0] in EXTRAS))
"""


def run(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", REFUSE_EXTRAS + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=180, cwd=cwd)


@pytest.fixture
def served(kafka, registry, data_dir, monkeypatch):
    with churn_served(kafka, registry, data_dir, monkeypatch) as env:
        yield env


def test_the_client_runs_without_the_heavy_extras(served, kafka, registry, data_dir):
    done = run(CLIENT, data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["sync v1 v1 ['churn']", "async v1", "heavy []"]
    with Subscriber(kafka, registry, f"{kafka.topic_prefix}labels", "GroundTruth", start="earliest") as labels:
        assert sorted(r.value["label"] for r in labels.read(2, timeout=20)) == ["churn", "stay"]


def test_a_command_whose_extra_is_missing_says_which_to_install(tmp_path):
    done = run("from flywheel.cli import main; sys.exit(main(['up', '--demo']))", tmp_path)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    named = re.fullmatch(r"flywheel up: needs the 'serve' extra \((\w+) is not installed\): "
                         r"pip install 'flywheel\[serve\]', or 'flywheel\[all\]' for every command", line)
    assert named and EXTRA_OF[named.group(1)] == "serve", line
    listed = run("from flywheel.cli import main; main(['--help'])", tmp_path)
    assert "(needs the 'train' extra)" in listed.stdout and "publish inference requests" in listed.stdout


def test_each_refused_import_is_brought_by_the_extra_the_cli_names():
    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    installed_by = packages_distributions()
    for module, extra in EXTRA_OF.items():
        named = {re.split(r"[<>=\[ ]", requirement)[0].lower() for requirement in extras[extra]}
        assert {d.lower() for d in installed_by[module]} & named, f"{module} is not in the '{extra}' extra"
