"""The server's log on stderr, at a small fraction of a connection's cost.

At the default level every connection is two lines (connected, disconnected).
Written the standard way, each line was a `logging.LogRecord` that looked up its
caller's frame, thread and process, a ``strftime`` of its time, and a
``write(2)`` with a flush: a third of the server's time per short connection.
Here the process, which owns its logging, turns off what the lines never show,
and the two lines of every connection go to the handler without a LogRecord
(`info`); the time is formatted once a second; and the lines of one turn of the event
loop are written together, with one ``write(2)``, when that turn ends (at once
for an operator watching the log; one write for a burst of connections), and
always before the process exits (`logging.shutdown` flushes every handler).
"""

from __future__ import annotations

import logging
import time
from typing import List, Optional

from gevent.hub import get_hub

#: The format of every line: time, level, message.
LINE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class SecondsCache(logging.Formatter):
    """`LINE_FORMAT` with the time formatted once per second, not per line,
    and a line without a traceback put together directly: the same text as
    `logging.Formatter` makes, at a third of its cost (it is two lines per
    connection: docs/performance.md)."""

    def __init__(self) -> None:
        super().__init__(LINE_FORMAT)
        #: Put before every message: which worker wrote it (`tag_lines`).
        self.tag = ""
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        return "%s,%03d" % (self._second_stamp(int(record.created)), record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            line = super().format(record)
            head = f"{record.asctime} {record.levelname} "
            return head + self.tag + line[len(head):]
        record.message = record.getMessage()
        return "%s %s %s%s" % (self.formatTime(record), record.levelname, self.tag,
                               record.message)

    def line(self, level: str, message: str, created: float) -> str:
        """The line `format` makes of a record of ``level`` and ``message``
        made at ``created``, without the record."""
        second = int(created)
        return "%s,%03d %s %s%s" % (self._second_stamp(second), (created - second) * 1000,
                                    level, self.tag, message)

    def _second_stamp(self, second: int) -> str:
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
        return self._stamp


class BatchingHandler(logging.StreamHandler):
    """Writes lines to its stream in batches: the first line of a batch asks
    the event loop of the thread that logs to call `flush` when its current
    turn is done."""

    def __init__(self, stream=None) -> None:
        super().__init__(stream)
        self.setFormatter(SecondsCache())
        self._lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # the logging module's way: report, never raise
            self.handleError(record)
            return
        self._add(line)

    def write_line(self, level: str, message: str) -> None:
        """A line written now, without a LogRecord (see `info`)."""
        self._add(self.formatter.line(level, message, time.time()))

    def _add(self, line: str) -> None:
        lines = self._lines
        lines.append(line)
        if len(lines) == 1:
            get_hub().loop.run_callback(self.flush)

    def flush(self) -> None:
        if self._lines:
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            try:
                self.stream.write(text)
            except Exception:  # stderr gone: nowhere left to say so
                pass
        super().flush()


def cheap_records() -> None:
    """Stop every log record from looking up what tailsrv's lines never show:
    the calling frame, thread and process (a process-wide setting, for a
    process that owns its logging, as the command line does)."""
    logging._srcfile = None  # the logging HOWTO's "Optimization" section
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class _Tag(logging.Filter):
    """Puts a tag before the message of every record a handler writes."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"{self.tag}{record.msg}"
        return True


def tag_lines(tag: str) -> None:
    """Begin the message of every line this process logs with ``tag``: which
    of the processes of ``--workers`` wrote it (``worker 2: ``)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, SecondsCache):
            handler.formatter.tag = tag
        else:  # the journal's handlers: this tag instead of the parent's
            for old in [f for f in handler.filters if isinstance(f, _Tag)]:
                handler.removeFilter(old)
            handler.addFilter(_Tag(tag))


#: The command line's handler, once it is the process's only one (`info`).
_direct: Optional[BatchingHandler] = None


def only_handler(handler: BatchingHandler) -> None:
    """Say that ``handler`` is where every line of the process goes (the
    command line's logging, set up once by the command line), so that
    `info` may write to it directly."""
    global _direct
    _direct = handler


def info(logger: logging.Logger, msg: str, *args) -> None:
    """``logger.info(msg, *args)``, for the two lines every connection writes.
    In the command line's process, whose only handler is its `BatchingHandler`
    (`only_handler`), the line goes straight to it: a LogRecord and the
    logging module's way to the handler were a quarter of a short
    connection's cost (docs/performance.md). Anywhere else (a server embedded
    in a program, or ``--journald``), it goes through logging as usual."""
    handler = _direct
    if handler is None:
        logger.info(msg, *args)
    elif logger.isEnabledFor(logging.INFO):
        handler.write_line("INFO", msg % args)
