"""The lock pins every requirement of the workspace, and this environment was installed from it."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from release.workspace import ROOT, distributions

LOCK = ROOT / "requirements-lock.txt"
INPUTS = [ROOT / "requirements-dev.txt", ROOT / "benchmarks" / "requirements.txt"]
WORKSPACE = {canonicalize_name(d.name) for d in distributions()}
# venv puts these in before the lock is read; they are the installer, not the project's.
BOOTSTRAP = {"pip", "setuptools"}


def _applies(requirement: Requirement, extras: tuple[str, ...] = ("",)) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras)


def _pins() -> dict[str, Version]:
    """The pins of the universal lock that apply to this interpreter and platform."""
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        if not line or line.startswith((" ", "#")):
            continue
        requirement = Requirement(line)
        if _applies(requirement):
            [spec] = requirement.specifier
            assert spec.operator == "==", line
            name = canonicalize_name(requirement.name)
            assert name not in pins, f"two pins of {name} apply here"
            pins[name] = Version(spec.version)
    return pins


def _declared() -> Iterator[tuple[Path, Requirement]]:
    """Every third-party requirement of the requirement files and of every pyproject.toml."""
    for path in INPUTS:
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                yield path, Requirement(line)
    for dist in distributions():
        project = dist.pyproject["project"]
        extras = project.get("optional-dependencies", {})
        for line in project.get("dependencies", []) + [r for rs in extras.values() for r in rs]:
            requirement = Requirement(line)
            if _applies(requirement, ("", *extras)):
                yield dist.path / "pyproject.toml", requirement


def test_the_lock_says_how_to_regenerate_it() -> None:
    assert "python3 run.py lock" in LOCK.read_text().splitlines()[1]


def test_the_lock_pins_no_workspace_distribution() -> None:
    assert not WORKSPACE & _pins().keys()


def test_every_declared_requirement_has_a_pin_that_satisfies_it() -> None:
    pins = _pins()
    unmet = [
        f"{path.relative_to(ROOT)}: {requirement} (locked: {pins.get(canonicalize_name(requirement.name))})"
        for path, requirement in _declared()
        if canonicalize_name(requirement.name) not in WORKSPACE
        and not requirement.specifier.contains(
            pins.get(canonicalize_name(requirement.name), Version("0.dev0")), prereleases=True
        )
    ]
    assert unmet == [], "run `python3 run.py lock`"


def test_this_environment_holds_exactly_the_locked_versions() -> None:
    pins = _pins()
    drift = []
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in WORKSPACE or (name in BOOTSTRAP and name not in pins):
            continue
        if pins.get(name) != Version(dist.version):
            drift.append(f"{name} {dist.version} installed, locked: {pins.get(name)}")
    assert drift == [], "installed without the lock, or the lock lacks a requirement"
