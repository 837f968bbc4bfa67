"""The documentation site: it builds with no warning, its API reference has every public name of
every package, and every Python block of its pages runs."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from release.workspace import ROOT, distributions

DOCS = ROOT / "docs"
PAGES = [DOCS / "index.md", *sorted((DOCS / "guides").glob("*.md"))]
# Public modules besides each distribution's top-level packages.
PUBLIC_SUBMODULES = ["inngest_mw.ai", "inngest_mw.realtime", "inngest_mw.testing"]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    site = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    _header, body = (site / "objects.inv").read_bytes().split(b"zlib.\n", 1)
    # "name domain:role priority uri dispname"; priority 1 is where the name is rendered, 2 an alias.
    entries = [line.split(" ") for line in zlib.decompress(body).decode().splitlines()]
    return {entry[0] for entry in entries if entry[2] == "1"}


def _public_modules() -> list[str]:
    return [p for d in distributions() for p in d.packages] + PUBLIC_SUBMODULES


def _public_names() -> list[str]:
    return [
        f"{module}.{name}"
        for module in _public_modules()
        for name in importlib.import_module(module).__all__
    ]


def test_the_site_builds_strict_and_the_reference_has_every_public_name(
    inventory: set[str],
) -> None:
    names = _public_names()
    assert len(names) > 60
    assert [name for name in names if name not in inventory] == []


def test_the_reference_shows_only_the_public_names_of_each_package(inventory: set[str]) -> None:
    public = set(_public_names())
    modules = set(_public_modules())
    shown = {name for name in inventory if name.rsplit(".", 1)[0] in modules} - modules
    assert sorted(shown - public) == []


def test_every_guide_has_python_blocks() -> None:
    guides = PAGES[1:]
    assert len(guides) == 7
    assert [p.name for p in guides if not BLOCK.search(p.read_text())] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_every_python_block_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    text = page.read_text()
    blocks = [
        (text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in BLOCK.finditer(text)
    ]
    # Blocks of a page run in order in one namespace, as a reader follows them, in a fresh process
    # so environment variables a page sets stay there.
    script = "\n".join(
        f"exec(compile({code!r}, {f'{page.name}:{line}'!r}, 'exec'), namespace)"
        for line, code in blocks
    )
    ran = subprocess.run(
        [sys.executable, "-c", f"namespace = {{'__name__': '__main__'}}\n{script}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
