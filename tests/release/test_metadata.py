"""Every distribution's metadata is what an index accepts and follows the one version policy."""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from release.workspace import ROOT, Distribution, distributions

import inngest_mw

DISTRIBUTIONS = distributions()
NAMES = {d.name for d in DISTRIBUTIONS}
VERSION = Version(inngest_mw.__version__)
SERIES = SpecifierSet(f">={VERSION},<{VERSION.major}.{VERSION.minor + 1}.0")


def _requirements(dist: Distribution) -> list[Requirement]:
    project = dist.pyproject["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def _ids(dist: object) -> str:
    assert isinstance(dist, Distribution)
    return dist.name


def test_the_workspace_has_the_core_and_every_member() -> None:
    assert DISTRIBUTIONS[0].name == "inngest-mw"
    assert len(DISTRIBUTIONS) == 13


@pytest.mark.parametrize("dist", DISTRIBUTIONS[1:], ids=_ids)
def test_every_member_carries_the_core_version(dist: Distribution) -> None:
    assert Version(dist.pyproject["project"]["version"]) == VERSION


def test_the_core_version_is_read_from_the_sdk_constant() -> None:
    core = DISTRIBUTIONS[0].pyproject
    assert core["project"]["dynamic"] == ["version"]
    source = core["tool"]["hatch"]["version"]
    text = (ROOT / source["path"]).read_text()
    assert re.search(source["pattern"], text, re.MULTILINE)["version"] == str(VERSION)  # type: ignore[index]


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=_ids)
def test_requirements_are_names_and_ranges_never_direct_references(dist: Distribution) -> None:
    for requirement in _requirements(dist):
        assert requirement.url is None, requirement
        if requirement.name in NAMES:
            assert requirement.specifier == SERIES, requirement
        else:
            assert any(spec.operator == ">=" for spec in requirement.specifier), requirement


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=_ids)
def test_workspace_dependencies_resolve_to_the_checkout_for_uv(dist: Distribution) -> None:
    sources = dist.pyproject["tool"]["uv"]["sources"]
    internal = {r.name for r in _requirements(dist) if r.name in NAMES}
    assert {name for name in internal if sources.get(name) == {"workspace": True}} == internal


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=_ids)
def test_every_distribution_has_a_readme_classifiers_and_a_license(dist: Distribution) -> None:
    project = dist.pyproject["project"]
    assert (dist.path / project["readme"]).is_file()
    assert project["license"] == "Apache-2.0"
    assert (dist.path / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert "Typing :: Typed" in project["classifiers"]
    assert project["requires-python"] == ">=3.11"


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=_ids)
def test_readme_links_work_on_an_index_page(dist: Distribution) -> None:
    # The README is the index's project page: a link relative to this checkout leads nowhere.
    readme = (dist.path / dist.pyproject["project"]["readme"]).read_text()
    assert re.findall(r"\]\((?!https?://|#)[^)]*\)", readme) == []


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=_ids)
def test_every_package_is_marked_typed(dist: Distribution) -> None:
    for package in dist.packages:
        assert (dist.path / package / "py.typed").is_file()


def test_the_core_extras_name_every_member_but_the_core() -> None:
    extras = DISTRIBUTIONS[0].pyproject["project"]["optional-dependencies"]
    named = {Requirement(line).name for lines in extras.values() for line in lines}
    assert named == NAMES - {"inngest-mw"}


def test_requirements_dev_installs_every_distribution_editable() -> None:
    lines = (ROOT / "requirements-dev.txt").read_text().splitlines()
    editable = {line.removeprefix("-e ").strip() for line in lines if line.startswith("-e ")}
    expected = {"."} | {"./" + d.path.relative_to(ROOT).as_posix() for d in DISTRIBUTIONS[1:]}
    assert editable == expected


def test_the_changelog_has_an_entry_for_the_current_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert re.search(
        rf"^## \[{re.escape(str(VERSION))}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M
    )
