"""The soak of tailsrv: a bounded torture run on loopback, reported with figures.

``scripts/soak [--quick] [--only CASES] [--json FILE] [--keep]`` runs each
reliability case against a real tailsrv process of its own (``python -m
tailsrv`` from this source tree, on a free port) and prints a markdown report:
what must hold, whether it held, and the figures measured. Exit status 0 when
every case held, 1 otherwise.

Safe to run on a shared machine: every loop is bounded in count and in time, the
run stops by itself, it kills only the processes it started (by PID), and every
connection goes to 127.0.0.1. Thousands of clients live in one epoll loop of
non-blocking sockets (`Loop`), not a thread each.

Every byte a client receives is compared with the file at that offset: the soak
writes the file itself (random bytes, so a byte from the wrong place cannot
match by chance) and reads it back with ``pread``.

The cases (`load`, `faults`, `rotation`) are functions taking counts as keyword arguments,
so that the test suite (tests/test_reliability.py) runs a short version of each.
Below them: `rig` (a file, a server and a client loop per case), `clients`
(the epoll loop and its clients), `files` (the file and its writer), `server`
(the tailsrv process), `report` (results and the markdown), `limits` (the wait
bound every case shares), and `run` (the command line).
"""
