"""Packaging as a user meets it: a wheel installed into a fresh virtual
environment, and the Dockerfile, linted and checked for its shape (the image
itself is built and run in tests/test_container.py)."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import List, Tuple

import pytest
from conftest import script
from tailsrv.http.rules import PAGES

ROOT = Path(__file__).parent.parent

#: Seconds a pip or venv command may take (pip fetches setuptools for the
#: isolated build, and the dependencies for the Dockerfile's install).
SLOW = 300

pytestmark = pytest.mark.timeout(2 * SLOW)


#: Debian's own Python, whose venvs get Debian's pip (python3-pip).
DEBIAN_PYTHON = "/usr/bin/python3"


def venv(path: Path, system_site_packages: bool, python: str = sys.executable) -> Path:
    """A fresh virtual environment; returns its bin directory. One that sees
    the system's packages installs without downloading the dependencies."""
    flags = ["--system-site-packages"] if system_site_packages else []
    subprocess.run([python, "-m", "venv", *flags, str(path)], check=True, timeout=SLOW)
    return path / "bin"


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(arg) for arg in args], capture_output=True,
                          timeout=SLOW, **kwargs)


def check_installed(bin: Path) -> None:
    """The console scripts answer --help, from that environment's copy."""
    for name in ("tailsrv", "tscat", "tssync", "tspub"):
        result = run(bin / name, "--help")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(name.encode()) and b"Usage:" in result.stdout
        assert b"Exit status" in result.stdout
    where = run(bin / "python", "-c", "import tailsrv; print(tailsrv.__file__)", cwd=bin)
    assert where.stdout.decode().startswith(str(bin.parent))
    pages = run(bin / "python", "-c",
                "from tailsrv.http.rules import load_pages; print(len(load_pages()))", cwd=bin)
    # The viewer's files, shipped as package data.
    assert pages.stdout.strip() == str(len(PAGES)).encode(), pages.stderr
    version = run(bin / "tailsrv", "--version")
    assert version.stdout.decode().split() == ["tailsrv", metadata_version()]


def metadata_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["version"]


@pytest.fixture(params=["debian", "newest"])
def pip_venv(request, tmp_path) -> Path:
    """A fresh virtual environment with Debian's pip (made by Debian's
    Python, python3-pip), or with the newest pip from PyPI."""
    if request.param == "debian":
        if not os.path.exists(DEBIAN_PYTHON) and not os.environ.get("CI"):
            pytest.skip(f"no {DEBIAN_PYTHON} here")
        return venv(tmp_path / "venv", system_site_packages=False, python=DEBIAN_PYTHON)
    bin = venv(tmp_path / "venv", system_site_packages=False)
    upgraded = run(bin / "pip", "install", "--upgrade", "pip")
    assert upgraded.returncode == 0, upgraded.stderr
    return bin


@pytest.mark.parametrize("editable", [False, True])
def test_pip_installs_without_a_deprecation_warning(pip_venv, editable):
    """``pip install .`` and ``pip install -e '.[test]'``, as the README says
    (without the dependencies: their own installs are not ours to judge)."""
    target = ["-e", f"{ROOT}[test]"] if editable else [ROOT]
    result = run(pip_venv / "pip", "install", "--no-deps", *target)
    said = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, said
    assert "DEPRECATION" not in said and "deprecated" not in said.lower(), said
    scripts = {path.name for path in pip_venv.iterdir()}
    assert {"tailsrv", "tscat", "tssync"} <= scripts
    shown = run(pip_venv / "pip", "show", "tailsrv").stdout.decode()
    assert f"Version: {metadata_version()}" in shown and "gevent" in shown


def test_build_makes_an_sdist_and_a_wheel_that_install_and_run(tmp_path):
    """``python -m build``: the sdist first, then the wheel built from it, so
    that the sdist holds everything a build needs; each installs and runs."""
    built = run(sys.executable, "-m", "build", "--outdir", tmp_path / "dist", ROOT)
    assert built.returncode == 0, built.stderr.decode()[-2000:]
    [sdist] = (tmp_path / "dist").glob("tailsrv-*.tar.gz")
    [wheel] = (tmp_path / "dist").glob("tailsrv-*.whl")
    for name, artefact in (("sdist", sdist), ("wheel", wheel)):
        bin = venv(tmp_path / name, system_site_packages=True)
        installed = run(bin / "pip", "install", "--no-deps", artefact)
        assert installed.returncode == 0, installed.stderr
        check_installed(bin)


def test_wheel_installs_into_a_fresh_venv(tmp_path):
    built = run(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-w", tmp_path / "dist")
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("tailsrv-*.whl")
    bin = venv(tmp_path / "venv", system_site_packages=True)
    installed = run(bin / "pip", "install", wheel)
    assert installed.returncode == 0, installed.stderr
    check_installed(bin)


def dockerfile() -> List[Tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_passes_hadolint():
    result = run(script("hadolint"), "--no-color", ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_dockerfile_shape():
    """Built in a stage of its own, run from the same base as an unprivileged
    user, checked for health, stopped by SIGTERM; building and running the image
    is tests/test_container.py."""
    instructions = dockerfile()
    bases = [args for keyword, args in instructions if keyword == "FROM"]
    assert bases == ["python:3.11-slim AS build", "python:3.11-slim"]
    keywords = dict(instructions)
    assert keywords["ENTRYPOINT"] == '["tailsrv"]'
    assert keywords["CMD"] == '["--help"]'
    assert keywords["STOPSIGNAL"] == "SIGTERM"
    assert "tailsrv.ops.health" in keywords["HEALTHCHECK"]
    assert "org.opencontainers.image.title" in keywords["LABEL"]
    user = [args for keyword, args in instructions if keyword == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert f"--uid {user[-1]}" in keywords["RUN"]  # the user it runs as is created
    assert int(keywords["EXPOSE"]) > 0
