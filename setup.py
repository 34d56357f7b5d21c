"""Installs the repository's layers under one import name, `flywheel`.

The folders stay at the top of the repository (schemas/, streams/, feature_store/, processors/,
the layout of the design), but a user's environment gains only `flywheel`: each layer installs as
`flywheel.<layer>`, so generic names such as `streams` or `schemas` never collide with theirs.
pyproject.toml holds everything else; this file only maps folders to packages, which
pyproject's static tables cannot express for several roots, and declares the compiled core.

The compiled core (schemas/wire/compiled, Cython) is optional: where no C compiler is found its
build fails with a warning and the install goes on; Flywheel then runs on the Python path and
says so at start-up.
"""
import os

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

LAYERS = ("schemas", "streams", "feature_store", "processors")


def packages() -> list[str]:
    found = find_packages(include=["flywheel", "flywheel.*"])
    for layer in LAYERS:
        found += [f"flywheel.{name}" for name in find_packages(include=[layer, f"{layer}.*"])]
    return found


def extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:        # Cython is a build requirement: absent only when setup.py is run by hand
        return []
    core = Extension("flywheel.schemas.wire.compiled.records", ["schemas/wire/compiled/records.pyx"])
    return cythonize([core], build_dir="build/cython", quiet=True)


class OptionalBuildExt(build_ext):
    """Builds the compiled core where it can. Where it cannot (no C compiler: the compiler's
    failure surfaces as one exception type or another by setuptools version, so any), it says so
    and the install goes on without it."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            self.warn(f"the compiled core ({ext.name}) was not built, Flywheel will run on its Python path: {e}")

    def get_outputs(self) -> list[str]:
        return [path for path in super().get_outputs() if os.path.exists(path)]


setup(
    packages=packages(),
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    package_dir={"flywheel": "flywheel", **{f"flywheel.{layer}": layer for layer in LAYERS}},
    package_data={"flywheel": ["web/templates/*.html", "web/static/*"], "flywheel.schemas": ["avro/*.avsc"],
                  "flywheel.feature_store": ["cql/*.cql"]},
)
