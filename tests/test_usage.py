"""The three console scripts end quietly when the reader of their output has
gone (``tscat --help | head -1``): no traceback, status 0. tscat's streamed
output is tested in test_tscat.py."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import IO_TIMEOUT, script

SCRIPTS = ("tailsrv", "tscat", "tssync")


def into_a_closed_pipe(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run a console script with its stdout a pipe whose reader has closed it
    already: its first write fails, as after ``| head`` has read enough."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run([script(name), *args], stdin=subprocess.DEVNULL, stdout=writer,
                              stderr=subprocess.PIPE, timeout=IO_TIMEOUT)
    finally:
        os.close(writer)


@pytest.mark.parametrize("option", ["--help", "--version"])
@pytest.mark.parametrize("name", SCRIPTS)
def test_help_and_version_into_a_closed_pipe(name, option):
    result = into_a_closed_pipe(name, option)
    assert (result.returncode, result.stderr) == (0, b"")


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_usage_error_with_stdout_closed_is_still_one(name):
    result = into_a_closed_pipe(name, "--frobnicate")
    assert result.returncode == 2
    assert b"Usage:" in result.stderr and b"Traceback" not in result.stderr
