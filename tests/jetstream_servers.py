"""Real nats-server processes for the JetStream tests (Debian's, on free
loopback ports, a store directory each), and a plain nats-py reader that puts
a subject's files back together from the stream."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import IO_TIMEOUT, free_port, wait_for

NATS_SERVER = shutil.which("nats-server")


def need_nats_server() -> None:
    """Skip without nats-server, unless under CI, which must have it."""
    if NATS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail("nats-server is missing (CI installs it: .ci/run)")
        pytest.skip("nats-server is not installed")


class NatsServer:
    """One ``nats-server -js`` process with a config file; `kill` by PID."""

    def __init__(self, root: Path, name: str, extra: str = "",
                 cluster: Optional[Dict[str, int]] = None) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "nats.conf"
        text = (f"server_name: {name}\nlisten: 127.0.0.1:{self.port}\n"
                f"jetstream {{ store_dir: \"{self.dir / 'store'}\" }}\n{extra}\n")
        if cluster is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{port}"
                               for other, port in cluster.items() if other != name)
            text += (f"cluster {{ name: tailsrv; listen: 127.0.0.1:{cluster[name]}; "
                     f"routes: [{routes}] }}\n")
        self.config.write_text(text)
        self.log_path = self.dir / "nats.log"
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([NATS_SERVER, "-c", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_for(lambda: "Server is ready" in self.log_path.read_text(errors="replace"))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(IO_TIMEOUT)


@pytest.fixture
def nats_server(tmp_path):
    """nats_server(extra_config="") -> a running single NatsServer."""
    need_nats_server()
    servers: List[NatsServer] = []

    def start(extra: str = "") -> NatsServer:
        servers.append(NatsServer(tmp_path / "nats", f"n{len(servers)}", extra))
        return servers[-1]

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def nats_cluster(tmp_path):
    """Three NatsServers routed to each other, JetStream ready."""
    need_nats_server()
    ports = {f"n{i}": free_port() for i in range(1, 4)}
    servers: List[NatsServer] = []
    try:
        for name in ports:
            servers.append(NatsServer(tmp_path / "cluster", name, cluster=ports))
        urls = ",".join(server.url for server in servers)
        wait_for(lambda: run(_jetstream_ready(urls)), timeout=30, interval=0.5)
        yield servers
    finally:
        for server in servers:
            server.kill()


def run(coroutine):
    return asyncio.run(coroutine)


async def _jetstream_ready(urls: str) -> bool:
    import nats
    nc = await nats.connect(urls.split(","), connect_timeout=2, max_reconnect_attempts=1)
    try:
        await nc.jetstream(timeout=2).account_info()
        return True
    except Exception:
        return False
    finally:
        await nc.close()


def stream_info(urls: str, stream: str):
    """``stream``'s StreamInfo, or None while it does not answer."""
    async def ask():
        import nats
        nc = await nats.connect(urls.split(","), connect_timeout=2, max_reconnect_attempts=1)
        try:
            return await nc.jetstream(timeout=2).stream_info(stream)
        finally:
            await nc.close()
    try:
        return run(ask())
    except Exception:
        return None


def read_stream(urls: str, subject: str, timeout: float = 5) -> List[dict]:
    """Every message of ``subject``, in stream order, read by a plain nats-py
    ordered consumer: ``{"data", "generation", "offset", "continues"}``."""
    return run(_read(urls.split(","), subject, timeout))


async def _read(servers: List[str], subject: str, timeout: float) -> List[dict]:
    import nats
    nc = await nats.connect(servers, connect_timeout=2, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        stream = await js.find_stream_name_by_subject(subject)
        last = (await js.stream_info(stream)).state.last_seq
        sub = await js.subscribe(subject, ordered_consumer=True)
        messages = []
        while True:
            try:
                msg = await sub.next_msg(timeout=timeout)
            except nats.errors.TimeoutError:
                raise AssertionError(f"the stream has more messages than arrived ({last})") \
                    from None
            headers = msg.headers or {}
            messages.append({"data": msg.data, "generation": int(headers["Tailsrv-Generation"]),
                             "offset": int(headers["Tailsrv-Offset"]),
                             "continues": headers.get("Tailsrv-Continues") == "1",
                             "id": headers["Nats-Msg-Id"]})
            if msg.metadata.sequence.stream >= last:
                return messages
    except nats.js.errors.NotFoundError:
        return []
    finally:
        await nc.close()


def files(messages: List[dict]) -> List[bytes]:
    """The files the messages hold, one per generation, checking on the way
    that each message starts where the one before it ended (no gap, no
    duplicate) and that generations go 0, 1, 2... in order."""
    generations: List[bytearray] = []
    for message in messages:
        if message["generation"] == len(generations):
            generations.append(bytearray())
        assert message["generation"] == len(generations) - 1, message
        file = generations[-1]
        assert message["offset"] == len(file), (message["offset"], len(file))
        file += message["data"]
    return [bytes(file) for file in generations]


def stream_files(urls: str, subject: str) -> List[bytes]:
    try:
        return files(read_stream(urls, subject))
    except Exception:  # not all there yet, or the cluster electing a leader
        return []
