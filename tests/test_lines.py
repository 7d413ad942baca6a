"""Line positions computed on bytes in memory: no file, no socket."""

import re

import pytest
from hypothesis import given, strategies as st

from tailsrv import lines
from tailsrv.lines import end_of_first_lines, start_of_last_lines


def reader(data: bytes, log=None):
    """A ``read(offset, length)`` over ``data`` that records what was read."""
    def read(offset, length):
        if log is not None:
            log.append((offset, length))
        return data[offset:offset + length]
    return read


def last_lines(data: bytes, count: int) -> int:
    """What ``tail -n COUNT`` prints, as a start position (the slow, obvious way)."""
    kept = re.findall(rb"[^\n]*\n|[^\n]+$", data)[-count:]
    return len(data) - sum(map(len, kept))


def first_lines(data: bytes, count: int):
    """Just after the COUNTth newline, or None when there are fewer."""
    position = 0
    for _ in range(count):
        index = data.find(b"\n", position)
        if index < 0:
            return None
        position = index + 1
    return position


def nothing():
    pass


@pytest.mark.parametrize("data, count, expected", [
    (b"", 10, 0),                       # empty file
    (b"one\n", 1, 0),                   # one line
    (b"one", 1, 0),                     # one line, no final newline
    (b"one\n", 5, 0),                   # fewer lines than asked: the whole file
    (b"a\nb\nc\n", 1, 4),
    (b"a\nb\nc", 1, 4),                 # the unterminated last line counts
    (b"a\nb\nc", 2, 2),
    (b"a\r\nb\r\nc\r\n", 2, 3),         # \r\n: \r stays with its line
    (b"\n\n\n", 2, 1),                  # empty lines are lines
])
def test_last_lines(data, count, expected):
    assert start_of_last_lines(reader(data), len(data), count, nothing) == expected


@pytest.mark.parametrize("data, count, expected", [
    (b"", 1, (None, 1)),
    (b"one", 1, (None, 1)),             # no newline yet: wait for it
    (b"one\n", 1, (4, 0)),
    (b"a\nb\nc\n", 2, (4, 0)),
    (b"a\r\nb\r\n", 1, (3, 0)),
    (b"a\nb", 3, (None, 2)),
])
def test_first_lines(data, count, expected):
    assert end_of_first_lines(reader(data), 0, len(data), count, nothing) == expected


def test_first_lines_resumes_where_it_stopped():
    data = b"a\nb\nc\nd\n"
    found, remaining = end_of_first_lines(reader(data), 0, 3, 3, nothing)
    assert (found, remaining) == (None, 2)
    assert end_of_first_lines(reader(data), 3, len(data), remaining, nothing) == (6, 0)


@given(st.binary(max_size=300).map(lambda b: b.replace(b"x", b"\n")), st.integers(1, 40),
       st.integers(1, 9))
def test_matches_tail_n_at_every_block_size(data, count, block):
    lines.BLOCK, saved = block, lines.BLOCK
    try:
        assert start_of_last_lines(reader(data), len(data), count, nothing) == \
            last_lines(data, count)
        found, remaining = end_of_first_lines(reader(data), 0, len(data), count, nothing)
        assert found == first_lines(data, count)
        assert remaining == (0 if found is not None else count - data.count(b"\n"))
    finally:
        lines.BLOCK = saved


def test_negative_count_reads_only_the_end(monkeypatch):
    monkeypatch.setattr(lines, "BLOCK", 1024)
    data = b"x" * 1_000_000 + b"\nlast line\n"
    log = []
    assert start_of_last_lines(reader(data, log), len(data), 1, nothing) == 1_000_001
    assert sum(length for _, length in log) <= 2 * 1024


def test_pauses_between_blocks(monkeypatch):
    """A long scan yields after every block, so other clients keep being served."""
    monkeypatch.setattr(lines, "BLOCK", 100)
    data = b"0123456789" * 100  # 1000 bytes, no newline at all
    pauses = []
    assert start_of_last_lines(reader(data), len(data), 1, lambda: pauses.append(1)) == 0
    assert len(pauses) == 10
    pauses.clear()
    assert end_of_first_lines(reader(data), 0, len(data), 1, lambda: pauses.append(1)) == \
        (None, 1)
    assert len(pauses) == 10
