#!/usr/bin/env python3
"""A fuzz target for the header parser, for hypothesis and for atheris (libFuzzer).

`check_stream` is the property: whatever a client sends, in whatever chunks,
`HeaderReader` answers "not yet", a `Request` that `parse_header` agrees with,
or `BadHeader`; never another exception, never a header longer than the limit.
tests/test_protocol.py runs it under hypothesis and runs this file under atheris
for a few seconds. To fuzz for longer by hand::

    python tests/fuzz_header.py -max_total_time=600
"""

from __future__ import annotations

import sys

from tailsrv.protocol import MAX_HEADER_BYTES, BadHeader, HeaderReader, parse_header


def check_stream(stream: bytes, step: int) -> None:
    """Feed ``stream`` in ``step``-byte chunks; fail on any answer the protocol forbids."""
    reader = HeaderReader()
    result = None
    try:
        for begin in range(0, max(len(stream), 1), step):
            result = reader.feed(stream[begin:begin + step])
            if result is not None:
                break
    except BadHeader:
        return
    line, newline, _ = stream.partition(b"\n")
    if result is None:
        assert not newline and len(stream) <= MAX_HEADER_BYTES, stream
    else:
        assert newline and len(line) <= MAX_HEADER_BYTES, stream
        assert parse_header(line) == result, stream


def fuzz_one(data: bytes) -> None:
    """The atheris entry point: the first byte picks the chunk size."""
    if data:
        check_stream(data[1:], data[0] % 16 + 1)


def main() -> None:
    import atheris

    atheris.instrument_func(check_stream)
    atheris.instrument_func(parse_header)
    atheris.instrument_func(HeaderReader.feed)
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
