"""The container, for real: the project's Dockerfile built by podman and run.

The image is built once per test session from the Dockerfile as it is, on a local
``python:3.11-slim`` made from Debian's packages when no registry is reachable
(scripts/podman/base), with podman's settings for this sandbox
(scripts/podman/containers.conf). Each test runs containers of its own, on
published loopback ports, and removes them by the names it gave them.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import List

import pytest
from conftest import IO_TIMEOUT, free_port, read_exactly, read_until_closed, script, wait_for
from test_rotation import GRACE, Rotator, Writer, numbers

ROOT = Path(__file__).parent.parent
PODMAN = ROOT / "scripts" / "podman"

#: Seconds a build may take: the base from Debian's packages (once, about a
#: minute and a half) and the image (pip fetches the dependencies).
BUILD_TIMEOUT = 600

pytestmark = [
    pytest.mark.timeout(BUILD_TIMEOUT + 120),
    pytest.mark.skipif(not shutil.which("podman") and not os.environ.get("CI"),
                       reason="podman is not installed (apt-get install podman runc debootstrap)"),
]


def podman(*args, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=dict(os.environ, CONTAINERS_CONF=str(
                                PODMAN / "containers.conf")))
    if check:
        assert result.returncode == 0, f"podman {args[0]}: {result.stderr}"
    return result


@pytest.fixture(scope="session")
def image():
    """The project's image, built from the Dockerfile unchanged."""
    env = dict(os.environ, CONTAINERS_CONF=str(PODMAN / "containers.conf"))
    subprocess.run([PODMAN / "base"], check=True, timeout=BUILD_TIMEOUT, env=env)
    tag = f"localhost/tailsrv-test:{uuid.uuid4().hex[:12]}"
    podman("build", "--pull=never", "--format", "docker", "-t", tag, ROOT,
           timeout=BUILD_TIMEOUT)
    yield tag
    podman("rmi", "--force", tag, check=False)


class Container:
    """One container of a test: run detached under a name of its own, removed at
    the end whatever happened."""

    def __init__(self, image: str, args: List[str], ports: List[int], volumes: List[str]) -> None:
        self.name = f"tailsrv-test-{uuid.uuid4().hex[:12]}"
        self.host_ports = {port: free_port() for port in ports}
        publish = [f"-p127.0.0.1:{host}:{inside}" for inside, host in self.host_ports.items()]
        mounts = [f"-v{volume}" for volume in volumes]
        podman("run", "-d", "--name", self.name, *publish, *mounts, image, *args)

    def port(self, inside: int = 4321) -> int:
        return self.host_ports[inside]

    def connect(self, header: bytes = b"0\n", inside: int = 4321) -> socket.socket:
        """A client of the published port, once the server in the container answers."""
        def attempt():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port(inside)), IO_TIMEOUT)
            except OSError:
                return None
            sock.sendall(header)
            return sock
        return wait_for(attempt, timeout=30)

    @property
    def pid(self) -> int:
        """The container's process, as the host sees it."""
        return int(podman("inspect", "--format", "{{.State.Pid}}", self.name).stdout)

    def logs(self) -> str:
        result = podman("logs", self.name)
        return result.stdout + result.stderr

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


@pytest.fixture
def containers():
    made = []

    def run(image: str, *args: str, ports=(4321,), volumes=()) -> Container:
        container = Container(image, list(args), list(ports), list(volumes))
        made.append(container)
        return container
    yield run
    for container in made:
        container.remove()


@pytest.fixture
def logdir(tmp_path) -> Path:
    """A directory the container's user (uid 10001) can read, with app.log in it."""
    directory = tmp_path / "log"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    (directory / "app.log").write_bytes(b"first line\nsecond line\n")
    (directory / "app.log").chmod(0o644)
    return directory


def test_no_arguments_prints_the_help(image):
    result = podman("run", "--rm", image)
    assert "Usage:" in result.stdout
    assert result.stdout.startswith("tailsrv - stream a growing file")


def test_a_mounted_log_is_streamed_and_an_append_arrives_within_a_second(image, containers,
                                                                        logdir):
    box = containers(image, "-p", "4321", "/data/app.log", volumes=[f"{logdir}:/data:ro"])
    box.connect().close()  # the server in the container is up
    # `echo 0 | nc`, as the README has it: nc keeps reading after its input ends.
    nc = subprocess.Popen(f"echo 0 | nc 127.0.0.1 {box.port()}", shell=True,
                          stdout=subprocess.PIPE)
    try:
        assert nc.stdout.read(23) == b"first line\nsecond line\n"
        with open(logdir / "app.log", "ab") as log:
            log.write(b"appended on the host\n")
        written = time.monotonic()
        assert nc.stdout.readline() == b"appended on the host\n"
        assert time.monotonic() - written < 1.0
    finally:
        nc.kill()
        nc.wait(IO_TIMEOUT)


def test_it_runs_as_a_user_without_capabilities(image, containers, logdir):
    box = containers(image, "-p", "4321", "/data/app.log", volumes=[f"{logdir}:/data:ro"])
    box.connect().close()
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{box.pid}/status").read_text().splitlines() if ":" in line)
    assert status["Name"].strip() == "tailsrv"
    assert set(status["Uid"].split()) == {"10001"}
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapPrm"], 16) == 0


def test_stop_ends_it_cleanly_and_its_log_has_no_traceback(image, containers, logdir):
    box = containers(image, "-p", "4321", "/data/app.log", volumes=[f"{logdir}:/data:ro"])
    client = box.connect()
    assert read_exactly(client, 23) == b"first line\nsecond line\n"
    started = time.monotonic()
    podman("stop", "--time", "10", box.name)
    assert time.monotonic() - started < 2.0
    assert read_until_closed(client) == b""  # an orderly close, not a reset
    state = podman("inspect", "--format", "{{.State.ExitCode}}", box.name).stdout.strip()
    assert state == "0"
    logs = box.logs()
    assert "connected: header 0" in logs
    assert "Traceback" not in logs


def test_the_viewer_and_the_stream_answer_through_a_published_port(image, containers, logdir):
    box = containers(image, "-p", "4321", "--http", "0.0.0.0:8080", "/data/app.log",
                     ports=(4321, 8080), volumes=[f"{logdir}:/data:ro"])
    box.connect().close()

    def get(target: str) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", box.port(8080), timeout=IO_TIMEOUT)
        connection.request("GET", target)
        return connection.getresponse()
    page = wait_for(lambda: _or_none(get, "/"), timeout=30)
    assert page.status == 200
    assert b"<title>" in page.read()
    stream = get("/stream?start=0")
    assert stream.status == 200
    body = b""
    while len(body) < 23:  # the response stays open, following the file
        body += stream.read1(23 - len(body))
    assert body == b"first line\nsecond line\n"


def _or_none(get, target):
    try:
        return get(target)
    except OSError:
        return None


def test_the_health_check_fails_when_the_server_stops_answering(image, containers, logdir):
    box = containers(image, "-p", "4321", "/data/app.log", volumes=[f"{logdir}:/data:ro"])
    box.connect().close()
    config = podman("inspect", "--format", "{{json .Config.Healthcheck}}", box.name).stdout
    assert "tailsrv.ops.health" in config  # kept: the image is in the docker format
    assert podman("healthcheck", "run", box.name, check=False).returncode == 0
    os.kill(box.pid, signal.SIGSTOP)  # alive, its port still completes connections
    try:
        unhealthy = podman("healthcheck", "run", box.name, check=False)
        assert unhealthy.returncode != 0
    finally:
        os.kill(box.pid, signal.SIGCONT)
    assert podman("healthcheck", "run", box.name, check=False).returncode == 0


def test_a_rotated_log_reaches_proof_resuming_clients_whole(image, containers, logdir, tmp_path):
    """Mounting one file cannot follow a rename (the container keeps the old
    inode), so the directory is mounted and tailsrv follows the name; the host's
    logrotate rotates it twice while a writer appends and tscat follows."""
    path = logdir / "app.log"
    path.unlink()
    writer = Writer(path)
    os.chmod(path, 0o644)
    box = containers(image, "-p", "4321", "--follow-name", "--rotation-grace", GRACE,
                     "/data/app.log",
                     volumes=[f"{logdir}:/data:ro"])
    box.connect().close()
    output = tmp_path / "tscat.out"
    writer.start()
    with open(output, "wb") as out:
        tscat = subprocess.Popen([script("tscat"), "--offset", "0", f"127.0.0.1:{box.port()}"],
                                 stdout=out, stderr=subprocess.PIPE)
    rotator = Rotator(path, "create")
    try:
        received = lambda: output.read_bytes().count(b"\n")  # noqa: E731
        wait_for(lambda: received() >= 20, timeout=30)  # tscat reads the first file
        for _ in range(2):
            before = writer.written
            rotator.rotate()
            writer.reopen()
            writer.wait_lines(20)
            # The client has moved on to the new file before the next rotation.
            wait_for(lambda: received() >= before + 20, timeout=30)
        total = writer.stop()
        wait_for(lambda: received() >= total, timeout=30)
    finally:
        tscat.terminate()
        _, errors = tscat.communicate(timeout=IO_TIMEOUT)
    assert numbers(output.read_bytes()) == list(range(total))
    assert b"file replaced" in errors


def test_a_new_file_that_cannot_be_read_yet_is_waited_for(image, containers, logdir, tmp_path):
    """logrotate's create mode makes the new file 0600 and only then gives it the
    old one's mode: tailsrv, not root in its container, waits for that."""
    box = containers(image, "-p", "4321", "--follow-name", "--rotation-grace", GRACE,
                     "/data/app.log", volumes=[f"{logdir}:/data:ro"])
    client = box.connect()
    assert read_exactly(client, 23) == b"first line\nsecond line\n"
    path = logdir / "app.log"
    path.rename(logdir / "app.log.1")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"the new file\n")
    os.close(fd)
    wait_for(lambda: "cannot read /data/app.log yet" in box.logs(), timeout=30)
    os.chmod(path, 0o644)
    newcomer = box.connect()
    assert read_exactly(newcomer, 13) == b"the new file\n"
    assert read_until_closed(client) == b""  # the old file's client: done with it


def test_the_sidecar_pod_serves_the_log_its_app_writes(image, tmp_path):
    """scripts/kube/sidecar.yaml as shipped but for its names, run by podman kube
    play: the app container appends to a log on the Pod's emptyDir, and a client
    on the published loopback port follows it."""
    manifest = (ROOT / "scripts" / "kube" / "sidecar.yaml").read_text()
    port, name = free_port(), f"tailsrv-test-{uuid.uuid4().hex[:12]}"
    assert "localhost/tailsrv:latest" in manifest and "hostPort: 4321" in manifest
    manifest = (manifest.replace("localhost/tailsrv:latest", image)
                .replace("hostPort: 4321", f"hostPort: {port}")
                .replace("name: app-with-tailsrv", f"name: {name}"))
    play = tmp_path / "sidecar.yaml"
    play.write_text(manifest)
    podman("kube", "play", play, timeout=120)
    try:
        def attempt():
            try:
                sock = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT)
                sock.sendall(b"0\n")
                return sock.makefile("rb").readline() or None
            except OSError:
                return None
        assert wait_for(attempt, timeout=30) == b"request 1 served\n"
        sock = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT)
        sock.sendall(b"-1l\n")  # the last line, then the app's next ones as they come
        lines = sock.makefile("rb")
        first = int(lines.readline().split()[1])
        assert [lines.readline() for _ in range(3)] == [
            b"request %d served\n" % n for n in range(first + 1, first + 4)]
        sock.close()
    finally:
        podman("kube", "down", play, check=False, timeout=120)
