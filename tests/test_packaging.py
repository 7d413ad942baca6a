"""Packaging as a user meets it: a wheel installed into a fresh virtual
environment, and the Dockerfile, linted and (with no container engine here)
its install commands replayed in a fresh virtual environment."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
from conftest import IO_TIMEOUT, connect, free_port, read_exactly, script, wait_for

ROOT = Path(__file__).parent.parent

#: Seconds a pip or venv command may take (pip fetches setuptools for the
#: isolated build, and the dependencies for the Dockerfile's install).
SLOW = 300

pytestmark = pytest.mark.timeout(2 * SLOW)


def venv(path: Path, system_site_packages: bool) -> Path:
    """A fresh virtual environment; returns its bin directory. One that sees
    the system's packages installs without downloading the dependencies."""
    flags = ["--system-site-packages"] if system_site_packages else []
    subprocess.run([sys.executable, "-m", "venv", *flags, str(path)], check=True, timeout=SLOW)
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
    pages = run(bin / "python", "-c", "from tailsrv.http.rules import load_pages; print(len(load_pages()))",
                cwd=bin)
    assert pages.stdout.strip() == b"3", pages.stderr  # the --http viewer, as package data
    version = run(bin / "tailsrv", "--version")
    assert version.stdout.decode().split() == ["tailsrv", metadata_version()]


def metadata_version() -> str:
    return run(sys.executable, ROOT / "setup.py", "--version", cwd=ROOT).stdout.decode().strip()


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
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    keywords = dict(instructions)
    assert keywords["ENTRYPOINT"] == '["tailsrv"]'
    user = [args for keyword, args in instructions if keyword == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert f"--uid {user[-1]}" in keywords["RUN"]  # the user it runs as is created
    assert int(keywords["EXPOSE"]) > 0


def test_dockerfile_commands_work_in_a_fresh_venv(tmp_path):
    """Replay COPY and the RUN's pip commands; then run the ENTRYPOINT on a file.

    The environment is empty, like the image: installing fetches the runtime
    dependencies, which shows that install_requires names them all."""
    context = tmp_path / "src"
    context.mkdir()
    bin = venv(tmp_path / "venv", system_site_packages=False)
    for keyword, args in dockerfile():
        if keyword == "COPY":
            *sources, _ = args.split()
            for source in sources:
                copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy
                copy(ROOT / source, context / source)
        elif keyword == "RUN":
            for command in args.split("&&"):
                words = shlex.split(command)
                if words[0] == "useradd":  # needs root and a throwaway system
                    continue
                assert words[0] == "pip", f"add {words[0]!r} to this replay"
                result = run(bin / "pip", *words[1:], cwd=context)
                assert result.returncode == 0, result.stderr
    check_installed(bin)

    served = tmp_path / "app.log"
    served.write_bytes(b"from the container\n")
    port = free_port()
    server = subprocess.Popen([bin / "tailsrv", "-p", str(port), served],
                              stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sock = wait_for(lambda: _try_connect(port))
        assert read_exactly(sock, 19) == b"from the container\n"
        sock.close()
    finally:
        server.kill()
        server.wait(IO_TIMEOUT)


def _try_connect(port: int):
    try:
        return connect(port)
    except OSError:
        return None
