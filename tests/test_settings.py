"""Settings: every field documented (with its unit where it is a quantity) and rendered in the
reference; the whole file checked before any command does anything, every problem one line of
one error; `-c FILE` reaching the processes `flywheel up` starts; a model name on the command
line checked against the registry."""
import dataclasses
import os
import signal
import subprocess
import sys
import time
import typing

import pytest
from flywheel.processors.models.store import ArtifactStore
from flywheel.schemas.setting import info

from flywheel.cli import main
from flywheel.config import ConfigError, is_table, load_config
from flywheel.sections import SECTIONS
from flywheel.settings import TopSettings
from flywheel.settings_reference import markdown
from tests.ports import stack_ports
from tests.test_worker_support import small_model

NOT_QUANTITIES = {("simulator", "seed")}   # a number that names, not measures


def every_field():
    """(section, field, type) of every setting, the tables nested in a section included."""
    def walk(section, cls):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if is_table(hints[f.name]):
                yield from walk(f"{section}.{f.name}", hints[f.name])
            else:
                yield section, f, hints[f.name]
    yield from walk("", TopSettings)
    for name, cls in SECTIONS.items():
        yield from walk(name, cls)


def test_every_setting_has_a_doc_and_a_unit_where_it_is_a_quantity():
    fields = list(every_field())
    assert len(fields) > 100
    undocumented = [f"[{s}] {f.name}" for s, f, _ in fields if not (info(f) and info(f).doc)]
    unitless = [f"[{s}] {f.name}" for s, f, kind in fields
                if kind in (int, float) and not info(f).unit and (s, f.name) not in NOT_QUANTITIES]
    assert not undocumented and not unitless, (undocumented, unitless)


def test_the_reference_shows_every_section_and_field_with_its_default():
    text = markdown()
    for section in [*SECTIONS, "store.sqlite", "store.cassandra"]:
        assert f"## `[{section}]`" in text
    for section, f, _ in every_field():
        assert f"| `{f.name}` |" in text, f"[{section}] {f.name}"
    assert "| `window_seconds` | float ≥ 1 | s | `3600.0` | `FLYWHEEL_MONITOR_WINDOW_SECONDS` |" in text


BAD = {
    "[monitr]\nwindow_seconds = 5\n": "[monitr] is not a section (did you mean [monitor]?)",
    "[kafka]\nbootstrapp = 'x'\n": "[kafka] bootstrapp is not a setting (did you mean bootstrap?)",
    "[kafka]\npartitions = 'four'\n": "[kafka] partitions = 'four': must be a whole number, not text",
    "[monitor]\nwindow_seconds = -5\n": "[monitor] window_seconds = -5: is below its minimum 1 s",
    "[retrainer]\ntrainer = 'sklearn-ish'\n": "[retrainer] trainer: trainer 'sklearn-ish' must be reference:mlp|gbt",
    "[retrainer]\ntrainer = 'sklearn:my_trainer.py:train'\n": "my_trainer.py:train cannot be loaded",
    "[retrainer.models.tumour]\ntrainer = 'sklearn:nothing.py:train'\n": "[retrainer.models.tumour] trainer: "
                                                                        "trainer sklearn:",
    "[trigger]\nperformance_metric = 'acuracy'\n": "(did you mean 'accuracy'?)",
    "[store]\ncassandra_hosts = ['h']\n": "[store] cassandra_hosts is not a key here: it is [store.cassandra] hosts",
}


@pytest.mark.parametrize("text, line", BAD.items(), ids=range(len(BAD)))
def test_each_mistake_is_one_line_and_a_non_zero_exit(tmp_path, capsys, text, line):
    cfg = tmp_path / "f.toml"
    cfg.write_text(text)
    assert main(["-c", str(cfg), "--data-dir", str(tmp_path / "d"), "topics"]) == 1
    err = capsys.readouterr().err.strip()
    assert line in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_a_plugin_path_is_relative_to_the_config_files_folder(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "my_trainer.py").write_text("def train(dataset, workdir, incumbent):\n    pass\n")
    cfg = tmp_path / "conf" / "f.toml"
    cfg.write_text("[retrainer]\ntrainer = 'sklearn:my_trainer.py:train'\n")
    monkeypatch.chdir(tmp_path)              # not the file's folder: the path still means conf/my_trainer.py
    from flywheel.processors.retrainer.settings import RetrainerSettings
    config = load_config(cfg, env={})
    assert config.section(RetrainerSettings, "retrainer").trainer == f"sklearn:{tmp_path}/conf/my_trainer.py:train"


def test_a_model_may_have_its_own_trainer_and_the_others_keep_the_default(tmp_path):
    (tmp_path / "my_trainer.py").write_text("def train(data):\n    pass\n")
    cfg = tmp_path / "f.toml"
    cfg.write_text("[retrainer]\ntrainer = 'reference:gbt'\n"
                   "[retrainer.models.tumour]\ntrainer = 'sklearn:my_trainer.py:train'\n")
    from flywheel.processors.retrainer.settings import RetrainerSettings
    from flywheel.schemas.setting import for_model
    settings = load_config(cfg, env={}).section(RetrainerSettings, "retrainer")
    assert for_model(settings, "tumour").trainer == f"sklearn:{tmp_path}/my_trainer.py:train"
    assert for_model(settings, "churn").trainer == "reference:gbt"     # the demo's model is not the plugin's


def test_up_with_every_mistake_at_once_starts_nothing(tmp_path):
    cfg = tmp_path / "f.toml"
    cfg.write_text("[kafka]\npartitions = 'four'\nbootstrapp = 'x'\n[monitor]\nwindow_seconds = -5\n"
                   "[retrainer]\ntrainer = 'sklearn:my_trainer.py:train'\n[trigger]\nperformance_metric = 'f2'\n"
                   "[monitr]\n")
    data_dir = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flywheel", "-c", str(cfg), "--data-dir", str(data_dir), "up",
                           *stack_ports().up_args()],
                          env=env, capture_output=True, text=True, timeout=120)
    print(f"flywheel up refused a bad file in {time.monotonic() - started:.1f}s")   # seen with -s; not asserted
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(lines) == 6 and lines[0].startswith("flywheel up: "), lines
    assert "[monitor] window_seconds = -5" in done.stderr    # brackets survive: no markup eats them
    assert not data_dir.exists()                              # no lock, no broker, no store: nothing started


def test_a_settings_error_is_one_config_error_listing_every_problem(tmp_path):
    cfg = tmp_path / "f.toml"
    cfg.write_text("[joiner]\nbatch_size = 0\nexactly_once = 'yes'\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, env={"FLYWHEEL_WORKER_REVIEW_SHARE": "2"})
    assert e.value.problems == ["FLYWHEEL_WORKER_REVIEW_SHARE = 2.0: is above its maximum 1 share",
                                "[joiner] batch_size = 0: is below its minimum 1 records",
                                "[joiner] exactly_once = 'yes': must be true or false, not text"]


def test_an_environment_variable_no_setting_reads_is_refused_with_its_new_name():
    with pytest.raises(ConfigError) as e:
        load_config(None, env={"FLYWHEEL_STORE_KEYSPACE": "ks", "FLYWHEEL_MONITOR_WINDOW_SECOND": "5",
                               "FLYWHEEL_STORE_CASSANDRA_KEYSPACE": "ks", "FLYWHEEL_SOMETHING_ELSE": "x"})
    assert e.value.problems == [
        "FLYWHEEL_MONITOR_WINDOW_SECOND is not a setting (did you mean FLYWHEEL_MONITOR_WINDOW_SECONDS?)",
        "FLYWHEEL_STORE_KEYSPACE is not a setting (did you mean FLYWHEEL_STORE_CASSANDRA_KEYSPACE?)"]


def test_the_config_file_given_to_up_reaches_its_processes(tmp_path):
    cfg = tmp_path / "conf" / "f.toml"
    cfg.parent.mkdir()
    cfg.write_text("[monitor]\nwindow_seconds = 7\n")
    data_dir = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if k != "FLYWHEEL_CONFIG" and k != "FLYWHEEL_BOOTSTRAP"}
    up = subprocess.Popen([sys.executable, "-m", "flywheel", "-c", str(cfg), "--data-dir", str(data_dir), "up",
                           *stack_ports().up_args()],
                          env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    log = data_dir / "monitor.log"
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and "monitor: 7s windows" in log.read_text()):
            assert up.poll() is None and time.monotonic() < deadline, up.stderr.read() if up.poll() else "timed out"
            time.sleep(0.3)
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=60)


@pytest.fixture
def churn(data_dir):
    onnx, manifest, _ = small_model()
    ArtifactStore(data_dir).save(onnx, dataclasses.replace(manifest, model="churn"))


@pytest.mark.parametrize("argv", [["retrain", "-m", "churm"], ["report", "--html", "r.html", "-m", "churm"],
                                  ["subscribe", "-m", "churm", "--timeout", "1"]], ids=lambda a: a[0])
def test_an_unknown_model_name_is_one_line_naming_the_registered_ones(kafka, data_dir, make_topics, churn,
                                                                      capsys, monkeypatch, argv):
    make_topics("churn")
    monkeypatch.chdir(data_dir)
    flags = ["--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix, "--data-dir", str(data_dir)]
    assert main([*flags, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"flywheel {argv[0]}: model 'churm' is not registered (registered: churn)"
    assert ArtifactStore(data_dir).models() == ["churn"] and not (data_dir / "models" / "churm").exists()
    assert not (data_dir / "r.html").exists()


def test_a_model_may_set_its_own_rule_thresholds_checked_as_the_sections_are(tmp_path):
    from flywheel.processors.trigger.settings import TriggerSettings
    from flywheel.schemas.setting import for_model
    cfg = tmp_path / "f.toml"
    cfg.write_text("[trigger]\nperformance_threshold = 0.8\n[trigger.models.fraud]\nperformance_threshold = 0.95\n"
                   "min_labels = 50\n")
    settings = load_config(cfg, env={}).section(TriggerSettings, "trigger")
    fraud, churn = for_model(settings, "fraud"), for_model(settings, "churn")
    assert (fraud.performance_threshold, fraud.min_labels) == (0.95, 50)
    assert (churn.performance_threshold, churn.min_labels) == (0.8, 200)
    cfg.write_text("[trigger.models.fraud]\nmin_labels = -1\nlookback_seconds = 60\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, env={})
    assert "[trigger.models.fraud] min_labels = -1: is below its minimum 0 labels" in str(e.value)
    assert "[trigger.models.fraud] lookback_seconds is not a setting a model may set for itself" in str(e.value)
