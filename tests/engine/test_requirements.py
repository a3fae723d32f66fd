"""The versions requirements.txt promises are the ones installed and tested here."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


def _requirement(name: str) -> Requirement:
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and Requirement(line).name.lower() == name:
            return Requirement(line)
    raise AssertionError(f"{name} is not in requirements.txt")


def test_transformers_is_the_tested_major():
    """MCG-RoPE's rope delta follows transformers 5.x; 4.x is excluded, not silently wrong."""
    required = _requirement("transformers")
    assert "4.49" not in required.specifier and "5.0" in required.specifier
    assert version("transformers") in required.specifier


def test_installed_versions_satisfy_the_lower_bounds():
    for name in ("torch", "open_clip_torch", "transformers", "accelerate", "peft"):
        assert version(name) in _requirement(name.lower()).specifier, name


def _optional(extra: str) -> list[Requirement]:
    import tomllib

    data = tomllib.loads((REQUIREMENTS.parent / "pyproject.toml").read_text())
    return [Requirement(line) for line in data["project"]["optional-dependencies"][extra]]


def test_ray_is_the_cluster_extra_and_the_test_command_installs_it_but_the_desktop_does_not():
    (ray,) = _optional("cluster")
    assert ray.name == "ray" and ray.extras == {"data"}
    desktop = [line.split("#", 1)[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    assert not [line for line in desktop if line and Requirement(line).name == "ray"]
    tests = (REQUIREMENTS.parent / "requirements-test.txt").read_text().splitlines()
    assert str(ray) in [line.split("#", 1)[0].strip() for line in tests]
    assert version("ray") in ray.specifier
