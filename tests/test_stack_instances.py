"""`flywheel up --workers N --joiners N --monitors N --triggers N --rollouts N --retrainers N`: N processes
of a command as one consumer group, each with its own instance id (so its own transactional id)."""
import pytest

from flywheel.cli import build_parser
from flywheel.commands.up import _with_instances
from flywheel.config import Config
from flywheel.stack import Stack, slot_instance_id


def specs(env: dict) -> dict[str, list[str]]:
    return {s.name: s.args for s in Stack(Config(env=env))._process_specs()}


def test_one_instance_each_by_default():
    got = specs({})
    assert got["worker"] == ["worker"] and got["joiner"] == ["joiner"] and got["monitor"] == ["monitor"]
    assert got["trigger"] == ["trigger"] and got["rollout"] == ["rollout"]


def test_up_flags_become_instances_each_with_its_own_id():
    args = build_parser().parse_args(["up", "--workers", "2", "--joiners", "3", "--monitors", "2",
                                      "--triggers", "2", "--rollouts", "2", "--retrainers", "2"])
    got = specs(dict(_with_instances(Config(env={}), args).env))
    assert not {"worker", "joiner", "monitor", "trigger", "rollout", "retrainer"} & set(got)
    assert {n: a for n, a in got.items() if "-" in n} == {
        **{f"worker-{i}": ["worker"] for i in (1, 2)}, **{f"joiner-{i}": ["joiner"] for i in (1, 2, 3)},
        **{f"{kind}-{i}": [kind] for kind in ("monitor", "trigger", "rollout", "retrainer")
           for i in (1, 2)}}
    assert len({slot_instance_id(name) for name in got}) == len(got)   # no slot fences another


@pytest.mark.parametrize("flag", ["--workers", "--joiners", "--monitors", "--triggers", "--rollouts", "--retrainers"])
def test_a_count_below_one_is_refused(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["up", flag, "0"])
    assert exit_.value.code == 2 and "1 or more" in capsys.readouterr().err

