"""What the scripts (tailsrv, tscat, tssync) share at the terminal: what they
say about bad arguments, and how they end when their reader goes away.

docopt rejects what does not fit the usage text, but says it in its own terms
(``Warning: found unmatched (duplicate?) arguments [Option(None, '--bogus', 0,
True)]``): `parse` says it as a sentence instead (`explain`: "unknown option
--bogus", "missing PATH"). `UsageError` covers a value that fits but is wrong
(a port of 70000). Both end the same way: one line naming the problem, the
``Usage:`` lines, exit status 2.

An exit status never depends on whether anyone reads standard error: a
message that cannot be written (``tailsrv -p 0 app.log 2>&1 | true``) is
dropped (`complain`), and standard error pointed at /dev/null, rather than
turned into another ending.

A reader that goes away (``tscat --help | head -1``) is the reader's choice,
not an error: the script ends at once, quietly, with status 0, as tscat's
usage text promises for its output.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections import Counter
from typing import Any, Callable, Dict, List, Optional

from docopt import DocoptExit, docopt, parse_options

Main = Callable[[Optional[List[str]]], int]


class UsageError(Exception):
    """An argument docopt accepted but whose value is wrong."""


def usage_section(doc: str) -> str:
    """The ``Usage:`` lines of a usage text, for a message after a bad argument."""
    return next(part for part in doc.split("\n\n") if part.startswith("Usage:")).strip()


def parse(doc: str, argv: Optional[List[str]], version: Optional[str] = None
          ) -> Dict[str, Any]:
    """docopt's parse of ``argv`` (``sys.argv[1:]`` when None) against the
    usage text ``doc``; `UsageError` with a plain sentence when it does not fit."""
    try:
        return docopt(doc, argv, version=version)
    except DocoptExit:
        raise UsageError(explain(doc, sys.argv[1:] if argv is None else argv)) from None


def explain(doc: str, argv: List[str]) -> str:
    """Why ``argv`` does not fit the usage text ``doc``, in words: an unknown
    option, an option without its value or given twice, two options that
    exclude each other, an argument missing or one too many."""
    usage = usage_section(doc)
    options = {name: option for option in parse_options(doc)
               for name in (option.short, option.longer) if name}
    given: Counter = Counter()  # by the option's canonical name
    positionals: List[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            positionals.extend(args)
        elif arg.startswith("--"):
            name, equals, _ = arg.partition("=")
            matches = [known for known in options if known.startswith(name)]
            if name not in options and len(matches) != 1:
                return (f"ambiguous option {name}: {' or '.join(sorted(matches))}" if matches
                        else f"unknown option {name}")
            option = options[name if name in options else matches[0]]
            if option.argcount and not equals and next(args, None) is None:
                return f"option {option.longer} needs a value"
            given[option.longer or option.short] += 1
        elif arg.startswith("-") and arg != "-":
            for at, letter in enumerate(arg[1:], 2):
                option = options.get(f"-{letter}")
                if option is None:
                    return f"unknown option -{letter}"
                given[option.longer or option.short] += 1
                if option.argcount:
                    if at == len(arg) and next(args, None) is None:
                        return f"option -{letter} needs a value"
                    break
        else:
            positionals.append(arg)
    for name, times in given.items():
        if times > 1 and not re.search(re.escape(name) + r"[^]\n]*\]\.\.\.", usage):
            return f"option {name} given more than once"
    for group in re.findall(r"\[([^]]*\|[^]]*)\]", usage):
        chosen = [options[name].longer or name for name in re.findall(r"--?[\w-]+", group)
                  if name in options and given[options[name].longer or name]]
        if len(chosen) > 1:
            return f"options {' and '.join(chosen)} cannot be combined: give one"
    first = usage.splitlines()[1]
    names = re.findall(r"\b([A-Z][A-Z0-9_]*)(\.\.\.)?", re.sub(r"\[[^]]*\]", "", first))
    if len(positionals) < len(names):
        return f"missing {names[len(positionals)][0]}"
    if len(positionals) > len(names) and not (names and names[-1][1]):
        return f"unexpected argument {positionals[len(names)]!r}"
    return f"these arguments do not fit together: {' '.join(argv)}"


def complain(text: str) -> None:
    """Write ``text`` as a line on standard error. When nobody reads it any
    more (a pipe whose reader is gone), drop it and point standard error at
    /dev/null: the script then ends with the status it meant to, not another."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # ValueError: stderr closed by the program
        _silence(sys.stderr)


def _silence(stream) -> None:
    """Point ``stream``'s descriptor at /dev/null, so that writing and
    flushing it (also by the interpreter at exit) succeed and say nothing."""
    try:
        fileno = stream.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def console_script(main: Main) -> Main:
    """A script's ``main(argv) -> status`` that ends with status 0 and no
    traceback when its standard output is a pipe whose reader has gone.

    Python ignores SIGPIPE, so writing to such a pipe raises BrokenPipeError:
    in docopt printing ``--help``, in printing ``--version``, in the last
    flush. Standard output is then pointed at /dev/null, so that the
    interpreter's own flush at exit has nothing to complain about (the recipe
    in the documentation of Python's `signal` module). Standard error is
    flushed too, and silenced if its reader is gone, rather than leaving
    that to the interpreter, which would make the status 120.
    """
    @functools.wraps(main)
    def script(argv: Optional[List[str]] = None) -> int:
        try:
            try:
                return main(argv)
            finally:
                if sys.stdout is not None:  # None when started with stdout closed
                    sys.stdout.flush()
        except BrokenPipeError:
            _silence(sys.stdout)
            return 0
        finally:
            try:
                if sys.stderr is not None:
                    sys.stderr.flush()
            except (BrokenPipeError, ValueError):
                _silence(sys.stderr)
    return script
