"""Manual approval of canaries, against the real broker and the embedded store: a canary that
passes its live evidence waits for a person, who approves (promoted) or rejects it (rolled back)
with `flywheel models approve|reject`; the timeline names who decided; a failing canary is still
rolled back on its own; a decision on anything but the waiting canary is a one-line error."""
import getpass
import time

import numpy as np
import pytest
from flywheel.processors.rollout import approval
from flywheel.processors.rollout.judge import Verdict
from flywheel.processors.rollout.process import Rollout
from flywheel.processors.rollout.settings import RolloutSettings
from flywheel.schemas.setting import for_model

from flywheel.cli import main
from flywheel.config import ConfigError, load_config
from flywheel.views import timeline
from tests.retrain_helpers import churn_world, feedback_rows, register_model

# Manual for churn only, through the per-model table: the section's own default stays auto.
MANUAL = RolloutSettings(min_labels=150, max_labels=1000, models={"churn": {"approval": "manual"}})


@pytest.fixture
def world(kafka, registry, make_topics, data_dir):
    """v1 (trained before the drift) live, v2 (trained after it, better now) a canary."""
    with churn_world(kafka, registry, make_topics, data_dir) as w:
        new = register_model(w.models, w.concept, "v2", seed=5)
        w.models.canary("churn", "v2", 0.2)
        yield w.store, w.models, w.concept, w.v1, new


def _serve(store, concept, trained, version, n, start, prefix):
    data = concept.sample(n, np.random.default_rng(hash(prefix) % 1000))
    store.put_feedback(feedback_rows(trained, data, version, start, prefix=prefix))


def _passes(world) -> Rollout:
    """Feedback on which canary v2 clearly beats live v1, and a rollout judging it."""
    store, models, concept, old, new = world
    now = int(time.time() * 1000) - 30_000
    _serve(store, concept, new, "v2", 300, now, "c")
    _serve(store, concept, old, "v1", 300, now, "l")
    return Rollout(store, models, MANUAL)


def _cli(kafka, data_dir, *args) -> int:
    return main(["--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix, "--data-dir", str(data_dir),
                 "models", *args])


def test_a_passing_canary_waits_for_approval_and_is_promoted_naming_who(world, kafka, data_dir, capsys):
    store, models, concept, old, new = world
    rollout = _passes(world)
    assert rollout.evaluate(models.deployment("churn")).verdict is Verdict.PROMOTE
    waiting = models.deployment("churn")
    assert (waiting.live_version, waiting.canary_version) == ("v1", "v2")          # not promoted
    assert waiting.awaiting.evidence["canary_loss"] < waiting.awaiting.evidence["live_loss"]
    events = len(models.history.events("churn"))
    rollout.evaluate(models.deployment("churn"))                                     # still passing: no new event
    assert len(models.history.events("churn")) == events
    (w,) = approval.waiting(models)
    assert (w.model, w.version, w.live_version) == ("churn", "v2", "v1") and "canary loss" in w.reason

    assert _cli(kafka, data_dir, "list") == 0
    assert "v2 awaits approval since" in capsys.readouterr().err
    assert _cli(kafka, data_dir, "approve", "v1", "-m", "churn", "--reason", "x") == 1      # v1 does not wait
    err = capsys.readouterr().err
    assert "churn version v1 is not waiting for approval (v2 is)" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert _cli(kafka, data_dir, "approve", "v2", "-m", "churn", "--reason", "fewer churners missed",
                "--by", "alice") == 0

    promoted = models.deployment("churn")
    assert (promoted.live_version, promoted.canary_version, promoted.awaiting) == ("v2", None, None)
    event = models.history.events("churn")[-1]
    assert (event["kind"], event["actor"], event["reason"]) == ("APPROVED", "alice", "fewer churners missed")
    assert event["evidence"] == waiting.awaiting.evidence                            # what was approved on
    shown = timeline.model_events("churn", models.history.events("churn"))
    assert [e.detail for e in shown if e.kind == "APPROVED"] == ["by alice: fewer churners missed"]
    assert [e.kind for e in shown][-2:] == ["AWAITING_APPROVAL", "APPROVED"]

    # Manual approval holds back a promotion only: a canary its evidence condemns is rolled back.
    models.canary("churn", "v1", 0.2)
    now = int(time.time() * 1000) - 20_000
    _serve(store, concept, old, "v1", 300, now, "c-old")
    _serve(store, concept, new, "v2", 300, now, "l-new")
    assert rollout.evaluate(models.deployment("churn")).verdict is Verdict.ROLL_BACK
    back = models.deployment("churn")
    assert (back.live_version, back.canary_version) == ("v2", None)
    assert models.history.events("churn")[-1]["kind"] == "ROLLED_BACK"


def test_a_rejected_canary_is_rolled_back_and_nothing_waits_after(world, kafka, data_dir, capsys):
    store, models, concept, old, new = world
    _passes(world).evaluate(models.deployment("churn"))
    judged = models.deployment("churn")              # what a rollout read just before the person decided
    assert _cli(kafka, data_dir, "reject", "v2", "-m", "churn", "--reason", "not before the holidays") == 0
    rejected = models.deployment("churn")
    assert (rejected.live_version, rejected.canary_version, rejected.awaiting) == ("v1", None, None)
    event = models.history.events("churn")[-1]
    assert (event["kind"], event["actor"], event["version"]) == ("DECLINED", getpass.getuser(), "v2")
    assert approval.waiting(models) == []
    # A rollout acting on its stale read (in auto mode it would promote v2) leaves the decision be.
    auto = Rollout(store, models, RolloutSettings(min_labels=150, max_labels=1000))
    assert auto.evaluate(judged).verdict is Verdict.PROMOTE
    assert models.deployment("churn").live_version == "v1" and models.history.events("churn")[-1] == event
    capsys.readouterr()
    assert _cli(kafka, data_dir, "approve", "v2", "-m", "churn", "--reason", "changed my mind") == 1
    assert "churn version v2 is not waiting for approval (no canary is)" in capsys.readouterr().err
    assert _cli(kafka, data_dir, "reject", "v2", "-m", "nope", "--reason", "x") == 1
    assert "model 'nope' is not registered" in capsys.readouterr().err
    with pytest.raises(SystemExit):                                                  # --reason is required
        _cli(kafka, data_dir, "approve", "v2", "-m", "churn")


@pytest.mark.parametrize("toml, problem", [
    ('[rollout]\napproval = "sometimes"', "[rollout] approval = 'sometimes': must be one of 'auto', 'manual'"),
    ('[rollout.models.churn]\napproval = "later"',
     "[rollout.models.churn] approval = 'later': must be one of 'auto', 'manual'"),
    ('[rollout.models.churn]\naproval = "manual"', "[rollout.models.churn] aproval is not a setting"),
    ('[rollout]\nmodels = {churn = "manual"}', "churn must be a table ([rollout.models.churn])"),
])
def test_approval_settings_are_checked_up_front(tmp_path, toml, problem):
    path = tmp_path / "flywheel.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert problem in str(e.value)


def test_a_models_own_approval_overrides_the_sections(tmp_path):
    path = tmp_path / "flywheel.toml"
    path.write_text('[rollout]\napproval = "manual"\n[rollout.models.churn]\napproval = "auto"\n')
    settings = load_config(path, env={}).section(RolloutSettings, "rollout")
    assert (for_model(settings, "churn").approval, for_model(settings, "fraud").approval) == ("auto", "manual")
    env = {"FLYWHEEL_ROLLOUT_MODELS": '{"fraud": {"approval": "auto"}}'}
    settings = load_config(path, env=env).section(RolloutSettings, "rollout")
    assert (for_model(settings, "churn").approval, for_model(settings, "fraud").approval) == ("manual", "auto")
