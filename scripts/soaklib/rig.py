"""What every case stands on, and the checks every case makes of the server."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

from .clients import Loop
from .files import GrowingFile, Writer
from .report import Result, Tally
from .server import ServerProcess

#: Growth of the server's resident memory, in bytes, still counted as flat. Per-client
#: buffering of the data the cases send would exceed it many times over.
FLAT_SLACK = 8 << 20


def server_health(result: Result, server: ServerProcess) -> None:
    """Figures and checks every case shares: alive, no traceback in its log."""
    alive = server.alive
    result.figures["server alive at the end"] = "yes" if alive else f"no ({server.proc.returncode})"
    tracebacks = server.log_count("Traceback")
    result.figures["tracebacks in the server log"] = tracebacks
    result.check(alive, "the server died")
    result.check(not tracebacks, f"{tracebacks} tracebacks in the server log")
    if alive:
        result.figures["server CPU time"] = f"{server.cpu():.1f} s"


class Rig:
    """What a case stands on: the file (``initial`` random bytes), a tailsrv
    serving it, a client loop, a tally, a seeded random generator and, once
    `write` is called, a writer. Leaving the ``with`` block adds the server's
    health and the tally's notes (if the case failed) to ``result``, then stops
    them all."""

    def __init__(self, work: Path, result: Result, name: str, seed: int, initial: int,
                 *server_args: str, nofile: Optional[int] = None) -> None:
        self.result = result
        self.file = GrowingFile(work / f"{name}.log", seed)
        self.file.append(initial)
        try:
            self.server = ServerProcess(work, self.file.path, *server_args, nofile=nofile)
        except BaseException:
            self.file.close()
            raise
        self.loop, self.tally, self.rng = Loop(), Tally(), random.Random(seed)
        self.writer: Optional[Writer] = None

    def write(self, rate: float, duration: float) -> Writer:
        self.writer = Writer(self.file, rate, duration)
        self.writer.start()
        return self.writer

    def __enter__(self) -> "Rig":
        return self

    def __exit__(self, error_type, _error, _traceback) -> None:
        if error_type is None:
            server_health(self.result, self.server)
            if not self.result.ok:
                self.result.failures += self.tally.notes
        if self.writer is not None:
            self.writer.stop()
        self.loop.close()
        self.server.stop()
        self.file.close()
