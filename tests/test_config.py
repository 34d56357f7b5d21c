"""Configuration precedence: defaults < file < environment < flags."""
from pathlib import Path

import pytest

from flywheel.config import ConfigError, build, load_config


def test_file_then_env_then_overrides(tmp_path):
    cfg = tmp_path / "f.toml"
    cfg.write_text('data_dir = "/srv/fw"\n[kafka]\npartitions = 8\ntopic_prefix = "a."\nbootstrap = "k:1"\n')
    c = load_config(cfg, env={})
    assert (c.data_dir, c.kafka.partitions, c.kafka.topic_prefix, c.kafka.bootstrap) == \
        (Path("/srv/fw"), 8, "a.", "k:1")
    c = load_config(cfg, env={"FLYWHEEL_KAFKA_PARTITIONS": "12", "FLYWHEEL_BOOTSTRAP": "k:2"})
    assert (c.kafka.partitions, c.kafka.bootstrap) == (12, "k:2")
    c = load_config(cfg, env={"FLYWHEEL_BOOTSTRAP": "k:2"}, kafka={"bootstrap": "k:3"}, data_dir="/x")
    assert (c.kafka.bootstrap, c.data_dir) == ("k:3", Path("/x"))


def test_config_file_from_environment(tmp_path):
    cfg = tmp_path / "f.toml"
    cfg.write_text("metrics_port = 9999\n")
    assert load_config(env={"FLYWHEEL_CONFIG": str(cfg)}).metrics_port == 9999


def test_sections_for_other_packages():
    from dataclasses import dataclass, field

    @dataclass
    class Widget:
        size: int = 1
        ratio: float = 0.5
        on: bool = False
        names: list[str] = field(default_factory=list)

    env = {"FLYWHEEL_WIDGET_RATIO": "0.25", "FLYWHEEL_WIDGET_ON": "yes", "FLYWHEEL_WIDGET_NAMES": "a, b"}
    assert build(Widget, "widget", {"size": 3}, env) == Widget(3, 0.25, True, ["a", "b"])
    with pytest.raises(ConfigError, match="FLYWHEEL_WIDGET_SIZE: 'big' is not a whole number"):
        build(Widget, "widget", {}, {"FLYWHEEL_WIDGET_SIZE": "big"})


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})


def test_a_renamed_setting_is_refused_with_its_new_name(tmp_path):
    old = tmp_path / "old.toml"
    old.write_text("[monitor]\ngrace_seconds = 10\n")
    with pytest.raises(ConfigError, match=r"\[monitor\] grace_seconds was renamed: it is allowed_lateness_seconds"):
        load_config(old, env={})
    with pytest.raises(ConfigError, match="FLYWHEEL_MONITOR_GRACE_SECONDS was renamed: it is "
                                          "FLYWHEEL_MONITOR_ALLOWED_LATENESS_SECONDS"):
        load_config(None, env={"FLYWHEEL_MONITOR_GRACE_SECONDS": "10"})
