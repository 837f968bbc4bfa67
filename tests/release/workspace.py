"""The workspace's distributions as their ``pyproject.toml`` files declare them."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MEMBER_GLOBS = ("integrations/*", "middleware/*", "devserver")


@dataclass(frozen=True, slots=True)
class Distribution:
    """One project directory of the workspace and its parsed ``pyproject.toml``."""

    path: Path
    pyproject: dict[str, Any]

    @property
    def name(self) -> str:
        name: str = self.pyproject["project"]["name"]
        return name

    @property
    def packages(self) -> list[str]:
        packages: list[str] = self.pyproject["tool"]["hatch"]["build"]["targets"]["wheel"][
            "packages"
        ]
        return packages


def distributions() -> list[Distribution]:
    """The core first, then every workspace member, in a stable order."""
    paths = [ROOT, *sorted(p for pattern in MEMBER_GLOBS for p in ROOT.glob(pattern))]
    return [
        Distribution(path, tomllib.loads((path / "pyproject.toml").read_text()))
        for path in paths
        if (path / "pyproject.toml").exists()
    ]
