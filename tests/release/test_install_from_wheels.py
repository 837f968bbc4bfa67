"""A user's install: every distribution built, checked as an index would, installed from a
directory of wheels only into a fresh virtualenv, then the demo and a FastAPI app run from there
with no checkout on the path."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import time
import venv
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_support import free_port, poll
from release.workspace import ROOT, distributions

import inngest_mw

EXTRAS = "otel,sentry,logging,encryption,fastapi,connect,dev"
VERSION = inngest_mw.__version__
LOCK = ROOT / "requirements-lock.txt"
TWINE = "twine==7.0.0"
"""Run from an environment of its own (``uv tool run``), not installed in the development one:
twine brings ``rich``, which httpx then imports in every process (its command line), so the
engine measured in ``benchmarks/`` would carry a package its users' installs do not."""


@dataclass(frozen=True, slots=True)
class Installed:
    """A fresh virtualenv holding ``inngest-mw[EXTRAS]`` installed from ``wheelhouse`` alone."""

    wheelhouse: Path
    venv: Path
    cwd: Path

    @property
    def bin(self) -> Path:
        return self.venv / ("Scripts" if os.name == "nt" else "bin")

    @property
    def python(self) -> Path:
        return self.bin / ("python.exe" if os.name == "nt" else "python")

    def env(self) -> dict[str, str]:
        """The environment a user's shell would have: none of this checkout's paths."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        return env

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=self.cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _check(process: subprocess.CompletedProcess[str]) -> str:
    assert process.returncode == 0, f"{process.args}\n{process.stdout}\n{process.stderr}"
    return process.stdout


def _tool(*args: str | Path) -> str:
    """Run ``python -m ...`` with this checkout's development environment."""
    command = [sys.executable, "-m", *map(str, args)]
    return _check(subprocess.run(command, capture_output=True, text=True, timeout=600))


def _build_all(wheelhouse: Path) -> None:
    # An sdist first, then the wheel built from that sdist: a file missing from the sdist fails.
    for dist in distributions():
        _tool("build", "--no-isolation", "--outdir", wheelhouse, dist.path)


def _download_dependencies(wheelhouse: Path) -> None:
    # Sibling distributions come from the wheelhouse only, never from the index, at this version.
    pins = wheelhouse.parent / "workspace-pins.txt"
    pins.write_text("".join(f"{d.name}=={VERSION}\n" for d in distributions()))
    # Third-party wheels at the locked versions, so every run installs the same set.
    _tool(
        "pip",
        "download",
        "--disable-pip-version-check",
        "--quiet",
        "--only-binary",
        ":all:",
        "--dest",
        wheelhouse,
        "--find-links",
        wheelhouse,
        "-c",
        pins,
        "-c",
        LOCK,
        f"inngest-mw[{EXTRAS}]=={VERSION}",
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("release")
    wheelhouse = base / "wheelhouse"
    wheelhouse.mkdir()
    _build_all(wheelhouse)
    _tool(
        "uv",
        "tool",
        "run",
        "--quiet",
        "--from",
        TWINE,
        "twine",
        "check",
        "--strict",
        *sorted(wheelhouse.iterdir()),
    )
    _download_dependencies(wheelhouse)
    cwd = base / "user"
    cwd.mkdir()
    target = Installed(wheelhouse, base / "venv", cwd)
    venv.EnvBuilder(with_pip=True).create(target.venv)
    pip: list[str | Path] = [target.python, "-m", "pip", "install", "--disable-pip-version-check"]
    _check(
        target.run(
            *pip, "--quiet", "--no-index", "--find-links", wheelhouse, f"inngest-mw[{EXTRAS}]"
        )
    )
    return target


def _wheel_names(installed: Installed) -> dict[str, list[str]]:
    return {
        wheel.name: zipfile.ZipFile(wheel).namelist()
        for wheel in installed.wheelhouse.glob("inngest_mw*.whl")
    }


def test_every_distribution_builds_a_wheel_shipping_py_typed_and_the_license(
    installed: Installed,
) -> None:
    wheels = _wheel_names(installed)
    for dist in distributions():
        stem = dist.name.replace("-", "_")
        [files] = [
            names for wheel, names in wheels.items() if wheel.startswith(f"{stem}-{VERSION}-")
        ]
        for package in dist.packages:
            assert f"{package}/py.typed" in files, (dist.name, package)
        assert f"{stem}-{VERSION}.dist-info/licenses/LICENSE" in files, dist.name


def test_every_distribution_builds_an_sdist_with_its_readme(installed: Installed) -> None:
    for dist in distributions():
        stem = f"{dist.name.replace('-', '_')}-{VERSION}"
        with tarfile.open(installed.wheelhouse / f"{stem}.tar.gz") as sdist:
            names = sdist.getnames()
        assert f"{stem}/README.md" in names
        assert f"{stem}/LICENSE" in names
        assert f"{stem}/pyproject.toml" in names
        assert not [n for n in names if n.startswith(f"{stem}/tests/")], dist.name


def test_the_install_comes_from_the_virtualenv_not_the_checkout(installed: Installed) -> None:
    modules = [
        "inngest_mw",
        "inngest_mw_dev",
        "inngest_mw_asgi",
        "inngest_mw_fastapi",
        "inngest_mw_otel",
        "inngest_mw_sentry",
        "inngest_mw_logging",
        "inngest_mw_encryption",
        "inngest_mw_connect",
    ]
    code = f"import importlib; print('\\n'.join(importlib.import_module(m).__file__ for m in {modules!r}))"
    files = _check(installed.run(installed.python, "-c", code)).split()
    assert len(files) == len(modules)
    for file in files:
        assert Path(file).resolve().is_relative_to(installed.venv.resolve()), file
        assert not Path(file).resolve().is_relative_to(ROOT), file


def test_the_demo_runs_to_completion_from_the_install(installed: Installed) -> None:
    out = _check(installed.run(installed.bin / "inngest-mw", "demo", timeout=180))
    assert "Completed" in out, out


FASTAPI_APP = textwrap.dedent(
    """
    import fastapi
    import inngest_mw
    import inngest_mw_fastapi
    from inngest_mw_logging import LoggingMiddleware
    from inngest_mw_otel import OTelMiddleware

    client = inngest_mw.Inngest(
        app_id="release-check", is_production=False, middleware=[OTelMiddleware, LoggingMiddleware]
    )


    @client.create_function(fn_id="total", trigger=inngest_mw.TriggerEvent(event="release/order"))
    async def total(ctx: inngest_mw.Context) -> dict[str, int]:
        items = await ctx.step.run("items", lambda: ctx.event.data["items"])
        await ctx.step.sleep("pause", "10ms")
        return {"total": await ctx.step.run("sum", lambda: sum(items))}


    app = fastapi.FastAPI()
    inngest_mw_fastapi.serve(app, client, [total])
    """
)


def _serve(
    installed: Installed, args: Sequence[str | Path], env: dict[str, str]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(a) for a in args],
        cwd=installed.cwd,
        env={**installed.env(), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.05)


@pytest.fixture
def engine_and_app(installed: Installed) -> Iterator[tuple[str, str]]:
    engine_url = f"http://127.0.0.1:{free_port()}"
    app_port = free_port()
    (installed.cwd / "release_app.py").write_text(FASTAPI_APP)
    processes: list[subprocess.Popen[str]] = []
    try:
        engine = _serve(
            installed,
            [
                installed.bin / "inngest-mw",
                "dev",
                "--connect-port",
                "0",
                "--port",
                engine_url.rsplit(":", 1)[1],
                "--db",
                installed.cwd / "engine.db",
            ],
            {},
        )
        processes.append(engine)
        _wait_healthy(f"{engine_url}/health", engine)
        app = _serve(
            installed,
            [installed.python, "-m", "uvicorn", "release_app:app", "--port", str(app_port)],
            {"INNGEST_BASE_URL": engine_url},
        )
        processes.append(app)
        app_url = f"http://127.0.0.1:{app_port}/api/inngest"
        _wait_healthy(app_url, app)
        yield engine_url, app_url
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)


def test_a_fastapi_app_from_the_install_runs_to_completion_on_the_engine(
    engine_and_app: tuple[str, str],
) -> None:
    engine_url, app_url = engine_and_app
    synced = httpx.put(app_url, timeout=30)
    assert synced.status_code == 200, synced.text
    sent = httpx.post(
        f"{engine_url}/e/release-key",
        json={"name": "release/order", "data": {"items": [2, 3, 5]}},
        timeout=30,
    )
    [event_id] = sent.json()["ids"]

    def runs() -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(
            f"{engine_url}/v1/events/{event_id}/runs", timeout=10
        ).json()["data"]
        return data

    [run] = poll(
        runs,
        lambda found: bool(found) and found[0]["status"] not in ("Queued", "Running"),
        timeout=60,
        what="the run to finish",
    )
    assert run["status"] == "Completed", run
    assert run["output"] == {"total": 10}
    # The web UI's templates and assets are package data: the installed engine must serve them.
    page = httpx.get(f"{engine_url}/runs/{run['run_id']}", timeout=10)
    assert page.status_code == 200, page.text[:500]
    assert "total" in page.text
    assert httpx.get(f"{engine_url}/static/style.css", timeout=10).status_code == 200
