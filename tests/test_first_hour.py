"""What a new user tripped on in the first hour (issue 20), each as it is now:
the tools speak `tail`, a typo fails fast, the wrong port says so, messages are
sentences, the viewer runs alone, exit statuses do not depend on a pipe.
Everything runs as the real console scripts, over real sockets."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import IO_TIMEOUT, free_port, script

SCRIPTS = ("tailsrv", "tscat", "tssync")


def run(*args: str, stderr=subprocess.PIPE, timeout: float = IO_TIMEOUT
        ) -> subprocess.CompletedProcess:
    """A console script (the first arg) run to its end, stdin closed."""
    return subprocess.run([script(args[0]), *args[1:]], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=stderr, timeout=timeout)


# 4. Messages that show the parser's insides.

@pytest.mark.parametrize("args, sentence", [
    (["tailsrv", "-p", "4793"], "tailsrv: missing PATH"),
    (["tailsrv", "--bogus", "app.log"], "tailsrv: unknown option --bogus"),
    (["tailsrv", "-x", "app.log"], "tailsrv: unknown option -x"),
    (["tailsrv", "app.log", "-p"], "tailsrv: option -p needs a value"),
    (["tailsrv", "-p", "1", "-p", "2", "app.log"], "tailsrv: option --port given more than once"),
    (["tailsrv", "-p", "1", "a.log", "b.log"], "tailsrv: unexpected argument 'b.log'"),
    (["tailsrv", "--ht", ":1", "app.log"], "tailsrv: ambiguous option --ht: --http or --http-auth"),
    (["tscat"], "tscat: missing ADDR"),
    (["tscat", "--lines"], "tscat: option --lines needs a value"),
    (["tscat", "--frobnicate", "h:1"], "tscat: unknown option --frobnicate"),
    (["tscat", "--offset", "1", "--lines", "2", "h:1"],
     "tscat: options --offset and --lines cannot be combined: give one"),
    (["tssync", "h:1"], "tssync: missing FILE"),
    (["tssync", "h:1", "a", "b"], "tssync: unexpected argument 'b'"),
])
def test_a_usage_error_is_a_sentence_and_the_usage(args, sentence):
    result = run(*args)
    lines = result.stderr.decode().splitlines()
    assert (result.returncode, lines[0]) == (2, sentence)
    assert lines[1] == "Usage:" and lines[2].split()[0] == args[0]
    assert "Option(" not in result.stderr.decode() and "Warning" not in result.stderr.decode()


# 6. Exit statuses that depend on a pipe.

def with_stderr_closed(*args: str) -> int:
    """The exit status of a console script whose stderr (and stdout) is a
    pipe nobody reads (``2>&1 | true``, the reader already gone)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run([script(args[0]), *args[1:]], stdin=subprocess.DEVNULL,
                              stdout=writer, stderr=writer, timeout=IO_TIMEOUT).returncode
    finally:
        os.close(writer)


@pytest.mark.parametrize("args, status", [
    (["tailsrv", "-p", "0", "app.log"], 2),         # a bad value
    (["tailsrv", "--bogus", "app.log"], 2),         # docopt's refusal
    (["tailsrv", "-p", "{port}", "{missing}/app.log"], 1),  # a runtime error, logged
    (["tailsrv", "--journald", "-p", "{port}", "app.log"], 1),  # no journal here
    (["tscat", "nohost"], 2),
    (["tscat", "--bogus", "h:1"], 2),
    (["tscat", "--no-reconnect", "127.0.0.1:{port}"], 1),   # refused
    (["tssync", "h:1"], 2),
    (["tssync", "--no-reconnect", "127.0.0.1:{port}", "{missing}/mirror"], 1),
])
def test_the_exit_status_does_not_depend_on_reading_stderr(tmp_path, args, status):
    values = {"port": str(free_port()), "missing": str(tmp_path / "missing")}
    args = [arg.format(**values) for arg in args]
    if "--journald" in args and os.path.exists("/run/systemd/journal/socket"):
        pytest.skip("a journal is here: --journald is no error")
    assert run(*args).returncode == status  # as it is with stderr read
    assert with_stderr_closed(*args) == status
