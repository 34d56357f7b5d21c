"""One error tree: every exception class our packages define descends from FlywheelError and
sits on at most one branch, so a new root cannot creep in and no error is both the user's to fix
and a dependency to wait for."""
import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

from flywheel.errors import FlywheelError, Unavailable, UserError

PACKAGES = ("flywheel", "flywheel.schemas", "flywheel.streams", "flywheel.processors", "flywheel.feature_store")


def _modules():
    for name in PACKAGES:
        package = importlib.import_module(name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not info.name.endswith("__main__"):      # running it is running the CLI
                yield importlib.import_module(info.name)


def _exception_classes() -> list[type[BaseException]]:
    found = {cls for module in _modules() for _, cls in inspect.getmembers(module, inspect.isclass)
             if issubclass(cls, BaseException) and cls.__module__.split(".")[0] == "flywheel"}
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def test_every_exception_we_define_descends_from_flywheel_error():
    classes = _exception_classes()
    assert len(classes) > 50            # the walk found the packages' errors, not nothing
    roots = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, FlywheelError)]
    assert roots == []


def test_no_error_is_both_the_users_and_an_unavailable_dependency():
    both = [c.__qualname__ for c in _exception_classes() if issubclass(c, UserError) and issubclass(c, Unavailable)]
    assert both == []


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_first_in_a_fresh_interpreter(package):
    """Every package imports flywheel.errors; a cycle through flywheel/__init__ would show here."""
    done = subprocess.run([sys.executable, "-c", f"import {package}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_exception_we_define_says_what_it_means_in_its_own_docstring():
    """Its docstring is where a reader learns whose mistake it is; an inherited one says nothing."""
    silent = [f"{c.__module__}.{c.__qualname__}" for c in _exception_classes() if not c.__dict__.get("__doc__")]
    assert silent == []
