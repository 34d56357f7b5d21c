"""How a command ends, by the error tree (flywheel/errors.py): a user's mistake is one line and
exit 1, an unavailable dependency one line and exit 75, anything else a traceback.

Where the error is chosen here, a failing handler replaces `topics`' before the CLI builds its
parser: the CLI's own code catches, prints and exits; only what is raised is chosen. One test of
each end runs a real `flywheel` process, to see what a user sees (stderr, exit code)."""
import subprocess
import sys

import pytest
from flywheel.feature_store.errors import StoreError
from flywheel.processors.runtime.commit import FatalCommitError
from flywheel.processors.runtime.pipeline import CommitStuck
from flywheel.streams.errors import BrokerUnavailable

from flywheel.cli import main
from flywheel.commands import topics
from flywheel.errors import BadInput, Unavailable


class VectorDbDown(Unavailable):
    """A dependency the CLI has never heard of: its error only subclasses Unavailable."""


def _flywheel(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "FLYWHEEL_DATA_DIR": str(tmp_path / "d")}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def topics_raises(monkeypatch, tmp_path):
    """`topics_raises(error)`: `flywheel topics` whose handler raises `error`; returns the exit code."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "d"))

    def run(error: Exception) -> int:
        def fail(args, config):
            raise error
        monkeypatch.setattr(topics, "run", fail)
        return main(["topics"])
    return run


def test_a_user_mistake_is_exactly_one_line_and_exit_1(tmp_path):
    (tmp_path / "flywheel.toml").write_text("[kafka]\nbootstrapp = 'x'\n")
    done = _flywheel(tmp_path, "-m", "flywheel", "topics")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("flywheel topics: [kafka] bootstrapp is not a setting"), \
        done.stderr


@pytest.mark.parametrize("argv, named", [
    (["-c", "nosuch.toml", "topics"], "nosuch.toml"),
    (["import", "m", "v1", "--sklearn", "no-such-model.pkl", "--sample", "no-such.csv"], "no-such-model.pkl"),
])
def test_a_missing_file_the_user_named_is_one_line_naming_it(tmp_path, monkeypatch, capsys, argv, named):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and named in err, err


def test_a_bug_raised_from_a_handler_is_a_traceback_and_non_zero(tmp_path):
    code = ("import sys\n"
            "from flywheel.cli import main\n"
            "from flywheel.commands import topics\n"
            "from flywheel.processors.runtime.commit import FatalCommitError\n"
            "def fail(args, config):\n"
            "    raise FatalCommitError('producer fenced by a newer instance')\n"
            "topics.run = fail\n"
            "sys.exit(main(['topics']))\n")
    done = _flywheel(tmp_path, "-c", code)
    assert done.returncode != 0
    assert done.stderr.startswith("Traceback (most recent call last):"), done.stderr
    assert done.stderr.rstrip().endswith(
        "flywheel.processors.runtime.commit.FatalCommitError: producer fenced by a newer instance")


@pytest.mark.parametrize("error", [FatalCommitError("fenced"), CommitStuck("commit hung"),
                                   StoreError("protocol error: unexpected frame"), KeyError("bootstrap")])
def test_anything_off_the_two_branches_propagates(topics_raises, error):
    """Typed bugs too: the issue's three (a fenced producer, a stuck commit, a store protocol
    error) used to print as the user's mistake because they came from our modules."""
    with pytest.raises(type(error)):
        topics_raises(error)


@pytest.mark.parametrize("error", [BrokerUnavailable("cannot list topics: broker down"),
                                   VectorDbDown("cannot list topics: broker down")])
def test_an_unavailable_dependency_is_one_line_and_exit_75(topics_raises, capsys, error):
    assert topics_raises(error) == 75
    assert capsys.readouterr().err.splitlines() == ["flywheel topics: cannot list topics: broker down"]


def test_each_problem_of_a_user_error_is_its_own_prefixed_line(topics_raises, capsys):
    assert topics_raises(BadInput("[monitor] window_seconds=-5 is not positive\n[montor] is not a section")) == 1
    assert capsys.readouterr().err.splitlines() == ["flywheel topics: [monitor] window_seconds=-5 is not positive",
                                                    "flywheel topics: [montor] is not a section"]


def test_a_secret_in_a_one_line_message_is_redacted(topics_raises, tmp_path, capsys):
    (tmp_path / "flywheel.toml").write_text("[kafka]\nsasl_password = 'hunter2-s3cret'\n")
    assert topics_raises(BadInput("login failed with hunter2-s3cret")) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "login failed" in err and "hunter2-s3cret" not in err, err
