"""setuptools glue pyproject.toml cannot express: the shipped rules as package data.

``rules/`` (every rule with its fixtures, so ``vedette rules test`` also runs on an install) is
installed as the package ``agent.shipped_rules``; :func:`agent.config.shipped_rules_dir` finds it
beside ``agent/config.py``. Everything else about the package is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["agent", "agent.*"]), "agent.shipped_rules"],
    package_dir={"agent.shipped_rules": "rules"},
    package_data={"agent.shipped_rules": ["**/*"]},
    include_package_data=False,
)
