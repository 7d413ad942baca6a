"""``--workers N``: N server processes on the same listening sockets, and the
parent that keeps them running.

One process uses one core. With workers, the command line opens its listeners
once (or takes systemd's), then forks N workers that inherit them: each is the
whole single-process server (its own watch of the file, fan-out, HTTP front,
metrics), and the kernel hands each new connection to whichever worker accepts
it first. One shared socket rather than a ``SO_REUSEPORT`` socket per worker:
it is the same for TCP, unix sockets and sockets systemd passes, a worker that
dies loses no queued connection (the others accept them), and a busy worker
accepts less, where ``SO_REUSEPORT`` places connections by a hash of their
addresses whatever each worker's load.

The parent serves nobody; it is a plain process (no event loop) that:

- forks the workers and restarts one killed by a signal (a crash, the OOM
  killer, ``kill -9``) after a pause that doubles with each quick death
  (`RESTART_DELAY` to `RESTART_DELAY_MAX`);
- ends the server as the single process would when a worker exits by itself
  (status 0: PATH went away, and every worker sees it; 1: a runtime error,
  which the worker logged): it stops the others and exits with the worst status;
- passes SIGTERM and SIGINT on to every worker and exits 0 once all have stopped;
- hears each worker's ``READY=1`` on a notify socket of its own (workers speak
  sd_notify to it as to systemd) and tells systemd ``READY=1`` once all are ready.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import gevent

from .. import logs
from ..server.listeners import unix_listener
from .systemd import notify

log = logging.getLogger("tailsrv")

#: Seconds before the first restart of a worker killed by a signal: short, so
#: that its clients can reconnect at once; doubled for each quick death after.
RESTART_DELAY = 0.1

#: Longest pause between restarts: a worker that dies at once, every time,
#: costs one fork every half a minute, not a busy loop.
RESTART_DELAY_MAX = 30.0

#: A worker that ran this many seconds before it died was healthy: its next
#: restart waits `RESTART_DELAY` again.
STEADY_SECONDS = 30.0

#: Seconds the workers have to stop after SIGTERM before they are killed
#: (a worker's own stop takes about a second: `TailServer.stop_timeout`).
STOP_TIMEOUT = 10.0

#: What the parent's log lines begin with; a worker's begin ``worker N: ``.
PARENT_TAG = "workers: "

#: The signals passed on to the workers.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def worker_count(text: str) -> int:
    """``--workers``: a positive number, or ``auto`` (one per core this
    process may run on); ValueError otherwise."""
    if text == "auto":
        return len(os.sched_getaffinity(0))
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError("expected a positive whole number or auto")


@dataclass
class Worker:
    """What a worker process is told: its number (1 to N), for its log lines,
    and where its metrics and those of the others are (`tailsrv.ops.metrics`)."""

    number: int
    metrics_listener: Optional[socket.socket] = None
    metrics_peers: List[str] = field(default_factory=list)


@dataclass
class _Slot:
    worker: Worker
    pid: int = 0
    started: float = 0.0
    ready: bool = False
    quick_deaths: int = 0
    restart_at: Optional[float] = None


class Supervisor:
    """Runs ``work(worker)`` in ``count`` forked processes (`run`)."""

    def __init__(self, count: int, work: Callable[[Worker], int], metrics: bool) -> None:
        self.work = work
        self.name = f"tailsrv-{os.getpid()}"
        self.slots: List[_Slot] = []
        private = [f"@{self.name}-metrics-{n}" for n in range(1, count + 1)] if metrics else []
        for n in range(1, count + 1):
            worker = Worker(n)
            if metrics:
                worker.metrics_listener = unix_listener(private[n - 1])
                worker.metrics_peers = [p for p in private if p != private[n - 1]]
            self.slots.append(_Slot(worker))
        self.notify_address = f"@{self.name}-notify"
        self.stopping: Optional[float] = None  # when SIGTERM was passed on
        self.status = 0
        self.announced = False
        self._signals: List[int] = []

    def run(self) -> int:
        """Start the workers, keep them running until a signal or one of them
        ends the server; return the exit status."""
        inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        inbox.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        inbox.bind("\0" + self.notify_address[1:])
        inbox.setblocking(False)
        wake_r, wake_w = socket.socketpair()
        for end in (wake_r, wake_w):
            end.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        for signum in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(signum, self._signalled)
        self._closed_in_child = [inbox, wake_r, wake_w]
        try:
            for slot in self.slots:
                self._start(slot)
            while any(slot.pid for slot in self.slots) or self.stopping is None:
                _flush_logs()
                select.select([inbox, wake_r], [], [], self._timeout())
                _drain(wake_r)
                self._handle_signals()
                self._reap()
                self._hear(inbox)
                self._restart_due()
                self._kill_late()
        finally:
            signal.set_wakeup_fd(-1)
            for signum in (*STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            for sock in (inbox, wake_r, wake_w):
                sock.close()
            for slot in self.slots:
                if slot.worker.metrics_listener is not None:
                    slot.worker.metrics_listener.close()
        log.info("all workers stopped")
        return self.status

    def _signalled(self, signum: int, _frame) -> None:
        self._signals.append(signum)

    def _start(self, slot: _Slot) -> None:
        _flush_logs()  # or the child writes the parent's pending lines again
        pid = os.fork()
        if pid == 0:
            self._child(slot.worker)
        slot.pid, slot.started, slot.ready, slot.restart_at = pid, time.monotonic(), False, None
        log.info("worker %d started (pid %d)", slot.worker.number, pid)

    def _child(self, worker: Worker) -> None:
        """In the forked worker: undo the parent's signal handling and event
        loop, run the server, and exit (never return into the parent's code)."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (*STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            for sock in self._closed_in_child:
                sock.close()
            gevent.reinit()  # the event loop's descriptors are the parent's
            os.environ["NOTIFY_SOCKET"] = self.notify_address
            logs.tag_lines(f"worker {worker.number}: ")
            status = self.work(worker)
        except BaseException:  # a worker never gets back into the parent's code
            log.exception("worker %d failed", worker.number)
        finally:
            logging.shutdown()
            os._exit(status)

    def _timeout(self) -> Optional[float]:
        times = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        if self.stopping is not None:
            times.append(self.stopping + STOP_TIMEOUT)
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _handle_signals(self) -> None:
        signals, self._signals = self._signals, []
        for signum in signals:
            if signum in STOP_SIGNALS:
                log.info("%s received; stopping the workers", signal.Signals(signum).name)
                self._stop(signum)

    def _stop(self, signum: int = signal.SIGTERM) -> None:
        if self.stopping is None:
            self.stopping = time.monotonic()
            notify("STOPPING=1")
        for slot in self.slots:
            slot.restart_at = None
            if slot.pid:
                _kill(slot.pid, signum)

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is not None:
                slot.pid = 0
                self._ended(slot, pid, wait_status)

    def _ended(self, slot: _Slot, pid: int, wait_status: int) -> None:
        number = slot.worker.number
        code = os.waitstatus_to_exitcode(wait_status)
        if self.stopping is not None:
            log.info("worker %d stopped", number)
            if code > 0:
                self.status = max(self.status, 1)
            return
        if code >= 0:  # it ended by itself, as the single process would have
            log.info("worker %d exited with status %d; stopping the others", number, code)
            self.status = max(self.status, min(code, 1))
            self._stop()
            return
        ran = time.monotonic() - slot.started
        slot.quick_deaths = 0 if ran >= STEADY_SECONDS else slot.quick_deaths + 1
        delay = min(RESTART_DELAY * 2 ** max(slot.quick_deaths - 1, 0), RESTART_DELAY_MAX)
        log.warning("worker %d (pid %d) was killed by %s after %.1f s; restarting it in %.1f s",
                    number, pid, signal.Signals(-code).name, ran, delay)
        slot.restart_at = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now and self.stopping is None:
                self._start(slot)

    def _kill_late(self) -> None:
        if self.stopping is not None and time.monotonic() >= self.stopping + STOP_TIMEOUT:
            for slot in self.slots:
                if slot.pid:
                    log.warning("worker %d did not stop in %.0f s; killing it",
                                slot.worker.number, STOP_TIMEOUT)
                    _kill(slot.pid, signal.SIGKILL)
            self.stopping = time.monotonic()  # and wait for them to be reaped

    def _hear(self, inbox: socket.socket) -> None:
        """The workers' sd_notify datagrams; ``READY=1`` from every worker
        makes the server ready."""
        while True:
            try:
                data, ancillary, _flags, _address = inbox.recvmsg(
                    4096, socket.CMSG_SPACE(_CREDENTIALS.size))
            except BlockingIOError:
                return
            pid = next((_CREDENTIALS.unpack(body[:_CREDENTIALS.size])[0]
                        for level, kind, body in ancillary
                        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS), 0)
            slot = next((s for s in self.slots if s.pid == pid and pid), None)
            if slot is None or b"READY=1" not in data.split(b"\n"):
                continue
            slot.ready = True
            if self.announced:
                log.info("worker %d ready again", slot.worker.number)
            elif all(s.ready for s in self.slots):
                self.announced = True
                log.info("all %d workers ready", len(self.slots))
                _flush_logs()  # the line before what it announces
                notify("READY=1")


def supervise(count: int, work: Callable[[Worker], int], metrics: bool) -> int:
    """Serve with ``count`` worker processes, each running ``work(worker)``
    (the single-process server); return the exit status (see the banner).
    The parent's log lines begin with `PARENT_TAG` (`logs.tag_lines`)."""
    return Supervisor(count, work, metrics).run()


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # died already: reaped on the next turn


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


def _flush_logs() -> None:
    """Write the parent's pending lines: its `logs.BatchingHandler` would
    otherwise wait for an event loop turn that never comes in the parent."""
    for handler in logging.getLogger().handlers:
        handler.flush()
