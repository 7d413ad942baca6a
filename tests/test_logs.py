"""The command line's log handler: lines of one event-loop turn in one write,
formatted as the standard formatter would, nothing left behind at exit."""

from __future__ import annotations

import logging
import subprocess
import sys

import gevent

from tailsrv import logs
from tailsrv.logs import LINE_FORMAT, BatchingHandler


class Writes:
    """A stream that remembers each write."""

    def __init__(self) -> None:
        self.writes = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def record(message: str, created: float = 1_700_000_000.25) -> logging.LogRecord:
    rec = logging.LogRecord("tailsrv", logging.INFO, __file__, 1, message, None, None)
    rec.created, rec.msecs = created, (created % 1) * 1000
    return rec


def test_lines_of_one_turn_are_one_write_when_it_ends():
    stream = Writes()
    handler = BatchingHandler(stream)
    for n in range(3):
        handler.handle(record(f"line {n}"))
    assert stream.writes == []  # still this turn of the loop
    gevent.sleep(0)
    assert len(stream.writes) == 1
    assert [line.split(" INFO ")[1] for line in stream.writes[0].splitlines()] == [
        "line 0", "line 1", "line 2"]
    handler.handle(record("next turn"))
    gevent.sleep(0)
    assert len(stream.writes) == 2


def test_formatted_as_the_standard_formatter_does():
    stream = Writes()
    handler = BatchingHandler(stream)
    standard = logging.Formatter(LINE_FORMAT)
    for created in (1_700_000_000.25, 1_700_000_000.999, 1_700_000_001.0):
        handler.handle(record("x", created))
        handler.flush()
        assert stream.writes[-1] == standard.format(record("x", created)) + "\n"
    with_args = record("%s sent %d bytes", 1_700_000_002.5)
    with_args.args = ("[::1]:4000", 12)
    handler.handle(with_args)
    handler.flush()
    assert stream.writes[-1] == standard.format(with_args) + "\n"
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("failed", 1_700_000_003.0)
        failed.exc_info = sys.exc_info()
    handler.handle(failed)
    handler.flush()
    failed.exc_text = None  # let the standard formatter render it again
    assert stream.writes[-1] == standard.format(failed) + "\n"
    assert "ValueError: boom" in stream.writes[-1]


def test_a_line_without_a_record_reads_as_one_with_it():
    """`SecondsCache.line`, what `logs.info` writes, is what the standard
    formatter makes of the record it skips."""
    handler = BatchingHandler(Writes())
    standard = logging.Formatter(LINE_FORMAT)
    for created in (1_700_000_000.25, 1_700_000_000.999, 1_700_000_001.0, 1_700_000_001.0625):
        rec = record("a connected: header 0", created)
        assert handler.formatter.line("INFO", "a connected: header 0", created) == \
            standard.format(rec)


def test_info_goes_straight_to_the_only_handler_at_its_level(monkeypatch):
    stream = Writes()
    handler = BatchingHandler(stream)
    logger = logging.getLogger("tailsrv.test_direct")
    monkeypatch.setattr(logs, "_direct", handler)
    try:
        with monkeypatch.context() as no_records:
            no_records.setattr(logging.LogRecord, "__init__", None)  # none may be made
            logger.setLevel(logging.INFO)
            logs.info(logger, "%s sent %d bytes", "[::1]:4000", 12)
            logger.setLevel(logging.WARNING)
            logs.info(logger, "not at --log-level warning")
    finally:
        logger.setLevel(logging.NOTSET)
    handler.flush()
    [text] = stream.writes
    assert text.endswith(" INFO [::1]:4000 sent 12 bytes\n")


def test_info_goes_through_logging_elsewhere(monkeypatch, caplog):
    """Embedded (or with --journald) the lines are ordinary records."""
    monkeypatch.setattr(logs, "_direct", None)
    with caplog.at_level(logging.INFO, logger="tailsrv.test_direct"):
        logs.info(logging.getLogger("tailsrv.test_direct"), "%s connected", "peer")
    assert [r.getMessage() for r in caplog.records] == ["peer connected"]


def test_nothing_is_lost_when_the_process_exits_before_the_loop_turns():
    code = ("import logging, sys; from tailsrv.logs import BatchingHandler; "
            "logging.getLogger().addHandler(BatchingHandler()); "
            "logging.getLogger().warning('last words'); sys.exit(3)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 3
    assert done.stderr.endswith("WARNING last words\n")
