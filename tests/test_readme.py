"""The README's Python blocks run as written against the embedded stack (broker, registry and
store in a data dir, the demo's churn model, a worker), so the README cannot rot."""
import ast
import re
from pathlib import Path


from feature_store import open_store, StoreSettings
from processors.models import ModelRegistry
from processors.simulator.bootstrap import ensure_model
from processors.simulator.concept import Concept
from tests.test_worker_support import RunningWorker

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_using_it_snippet_runs(kafka, registry, data_dir, make_topics, monkeypatch, capsys):
    make_topics("churn")
    models = ModelRegistry(kafka, registry, data_dir, actor="test")
    ensure_model(models, open_store(StoreSettings(), data_dir), "churn", Concept(), rows=3000)
    for name, value in {"FLYWHEEL_DATA_DIR": data_dir, "FLYWHEEL_BOOTSTRAP": kafka.bootstrap,
                        "FLYWHEEL_TOPIC_PREFIX": kafka.topic_prefix}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.chdir(data_dir)  # no flywheel.toml of the clone's own
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no python block"
    with RunningWorker(kafka, registry, data_dir):
        for block in blocks:
            exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    subscribed, predicted, rejected, imported, answered = lines
    request_id, label, _ = subscribed.split(" ", 2)
    assert len(request_id) == 32 and label in ("churn", "stay")
    assert predicted.split() == [predicted.split()[0], "v1"] and predicted.split()[0] in ("churn", "stay")
    assert rejected == "rejected: missing_feature feature 'x1': required and missing"
    # bring your own model: the pipeline registered, converted faithfully, served by the worker
    assert imported == "('0', '1') 569"
    label, scores = answered.split(" ", 1)
    assert label in ("0", "1") and set(ast.literal_eval(scores)) == {"0", "1"}
    profile = open_store(StoreSettings(), data_dir).get_profile("tumour", "v1")
    assert profile is not None                                  # the drift reference, from the sample


def test_every_monitor_and_trigger_setting_is_documented_with_its_unit():
    import dataclasses
    from processors.monitor.settings import MonitorSettings
    from processors.trigger.settings import TriggerSettings
    text = README.read_text()
    for section, cls in (("monitor", MonitorSettings), ("trigger", TriggerSettings)):
        table = text[text.index(f"| `[{section}]` key |"):]
        table = table[:table.index("\n\n")]
        documented = {name.strip("` ") for row in table.splitlines()[2:]
                      for name in row.split("|")[1].split(",")}
        rows_with_units = [row.split("|")[3].strip() for row in table.splitlines()[2:]]
        missing = {f.name for f in dataclasses.fields(cls)} - documented - {"group_id"}
        assert not missing, f"[{section}] keys missing from the README: {sorted(missing)}"
        assert all(rows_with_units)
