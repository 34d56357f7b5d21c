"""Installs the repository's layers under one import name, `flywheel`.

The folders stay at the top of the repository (schemas/, streams/, feature_store/, processors/,
the layout of the design), but a user's environment gains only `flywheel`: each layer installs as
`flywheel.<layer>`, so generic names such as `streams` or `schemas` never collide with theirs.
pyproject.toml holds everything else; this file only maps folders to packages, which
pyproject's static tables cannot express for several roots.
"""
from setuptools import find_packages, setup

LAYERS = ("schemas", "streams", "feature_store", "processors")


def packages() -> list[str]:
    found = find_packages(include=["flywheel", "flywheel.*"])
    for layer in LAYERS:
        found += [f"flywheel.{name}" for name in find_packages(include=[layer, f"{layer}.*"])]
    return found


setup(
    packages=packages(),
    package_dir={"flywheel": "flywheel", **{f"flywheel.{layer}": layer for layer in LAYERS}},
    package_data={"flywheel": ["web/templates/*.html", "web/static/*"], "flywheel.schemas": ["avro/*.avsc"],
                  "flywheel.feature_store": ["cql/*.cql"]},
)
