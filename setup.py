"""Which files the wheel holds; everything else about the package is in pyproject.toml.

pyproject.toml cannot both discover packages and add one from another folder, so this file does
both: the code packages, and the checkout's top-level ``resources/`` shipped as the package data
``engine/resources`` (``engine.paths.resources_dir`` looks there first).
"""

from setuptools import find_packages, setup

CODE = ["app", "engine", "cli", "clinlens"]

setup(
    packages=[*find_packages(include=[*CODE, *(f"{name}.*" for name in CODE)]), "engine.resources"],
    package_dir={"engine.resources": "resources"},
    package_data={
        "engine.resources": ["*.json", "*.md", "demo/*", "knowledge/*.json", "report_templates/*.json", "icons/*"]
    },
    include_package_data=False,
)
