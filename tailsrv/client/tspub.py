"""tspub - publish a file that a tailsrv server streams to NATS JetStream, exactly once.

Usage:
  tspub [options] ADDR NATS_URL SUBJECT
  tspub (-h | --help)
  tspub --version

tspub follows the tailsrv server at ADDR and publishes the file it serves to
the JetStream subject SUBJECT on the NATS server(s) at NATS_URL, as it grows.
Each message is one line of the file with its newline (--records lines), or
a chunk of up to 64 KiB (--records chunks); its headers say where its bytes
stand in which file: Tailsrv-Offset (the byte position of its first byte),
Tailsrv-Generation (0 for the first file, one more each time the file was
replaced), Nats-Msg-Id (SUBJECT/GENERATION/OFFSET-END, so JetStream drops
a duplicate). A line that has not ended is published once it does; a line
longer than the server's maximum payload goes in several messages, all but
the last with the header Tailsrv-Continues: 1.

Exactly once: a tspub that starts reads the subject's last message and
resumes after it, proving to tailsrv with the bytes published last that the
file is still the same; when it is not (rotated, replaced, truncated), the
new file is published from its start as the next generation. Nothing is lost
or published twice when tspub is killed, when tailsrv restarts, or when a
NATS node fails. Two tspub on one subject never both publish: the one refused
says so and exits with status 1. When JetStream does not answer, tspub says
so once, keeps its place and tries again with growing pauses (up to 30 s).

ADDR is HOST:PORT, [IPV6]:PORT (brackets required), or unix:PATH. NATS_URL is
nats://HOST:PORT, several separated by commas for a cluster. SUBJECT is a
subject without wildcards.

Options:
  --stream NAME      The stream to publish to; created when missing, with
                     SUBJECT as its only subject; an existing one must have
                     SUBJECT as its only subject. By default SUBJECT with
                     its dots turned into underscores.
  --replicas N       Replicas of the stream when tspub creates it [default: 1].
  --records MODE     lines or chunks [default: lines].
  --creds FILE       NATS credentials (a .creds file, JWT and NKey seed).
  --token-file FILE  A file holding the NATS authentication token.
  -h, --help         Show this help and exit.
  --version          Show the version and exit.

Example:
  tspub --replicas 3 localhost:4321 nats://n1:4222,nats://n2:4222 logs.app

Exit status: 0 when stopped by SIGTERM; 1 on an error (NATS unreachable at
start, the stream refusing a message or full, another tspub on the subject),
reported in one line on standard error; 2 on bad usage; 130 after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import List, Optional
from urllib.parse import urlsplit

from ..usage import UsageError, console_script
from .follower import parse_address
from .jetstream_format import valid_subject
from .records import MODES
from .tool import Args, integer, run

#: Characters a JetStream stream name may not hold.
STREAM_FORBIDDEN = frozenset(".*>/\\ \t\r\n")


@console_script
def main(argv: Optional[List[str]] = None) -> int:
    return run(__doc__, argv, _tspub)


def _tspub(args: Args) -> int:
    # Imported here: `tspub --help` answers without loading nats-py.
    from .publisher import Options, PublishError, Publisher
    options = Options(
        address=args["ADDR"], servers=nats_servers(args["NATS_URL"]),
        subject=subject(args["SUBJECT"]), stream=stream_name(args["--stream"], args["SUBJECT"]),
        replicas=replicas(args), mode=mode(args["--records"]),
        credentials=args["--creds"], token=_read_token(args["--token-file"]))
    parse_address(options.address)
    logging.getLogger("tailsrv").setLevel(logging.INFO)
    try:
        asyncio.run(_until_terminated(Publisher(options).run()))
    except PublishError as error:
        raise _Failed(str(error)) from None
    return 0


async def _until_terminated(publishing) -> None:
    """Run ``publishing`` until it ends or SIGTERM arrives; SIGTERM cancels it,
    so that it closes its connection on the way out, whatever it was doing."""
    task = asyncio.ensure_future(publishing)
    terminated = []

    def terminate() -> None:
        terminated.append(True)
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    try:
        await task
    except asyncio.CancelledError:
        if not terminated:
            raise  # not SIGTERM: Ctrl-C, which asyncio.run turns into KeyboardInterrupt


class _Failed(OSError):
    """A publishing error, for `tool.run` to print in one line (status 1)."""


def nats_servers(url: str) -> List[str]:
    """``nats://HOST:PORT[,nats://HOST:PORT...]`` -> the list of server URLs."""
    servers = []
    for part in url.split(","):
        part = part.strip()
        try:
            parts = urlsplit(part)
            port = parts.port
        except ValueError:
            port = parts = None
        if parts is None or parts.scheme not in ("nats", "tls") or not parts.hostname or \
                not port or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise UsageError(f"{part!r}: expected nats://HOST:PORT (several separated by "
                             "commas)")
        if parts.username or parts.password:
            raise UsageError(f"{part!r}: give credentials in a file (--creds, --token-file), "
                             "not on the command line")
        servers.append(part)
    return servers


def subject(text: str) -> str:
    """A subject to publish to: dot-separated tokens, none empty, no wildcard."""
    if not valid_subject(text):
        raise UsageError(f"invalid subject {text!r}: expected tokens separated by dots, "
                         "without wildcards (* >) or spaces")
    return text


def stream_name(name: Optional[str], subject_text: str) -> str:
    """The stream's name: ``--stream``, or the subject with ``_`` for ``.``."""
    if name is None:
        name = subject_text.replace(".", "_")
    if not name or STREAM_FORBIDDEN.intersection(name):
        raise UsageError(f"invalid stream name {name!r}: no dots, wildcards, slashes or spaces")
    return name


def replicas(args: Args) -> int:
    value = integer(args, "--replicas")
    if not 1 <= value <= 5:
        raise UsageError(f"invalid --replicas {value}: JetStream keeps 1 to 5 replicas")
    return value


def mode(text: str) -> str:
    if text not in MODES:
        raise UsageError(f"invalid --records {text!r}: expected lines or chunks")
    return text


def _read_token(path: Optional[str]) -> Optional[str]:
    """The token in ``path`` (its first line), or None without one."""
    if path is None:
        return None
    with open(path) as file:
        token = file.readline().strip()
    if not token:
        raise _Failed(f"{path}: no token in the file")
    return token
