"""records.py, the pure rule that cuts a file into JetStream messages: no socket."""

import random

import pytest

from tailsrv.client.records import CHUNK_BYTES, Record, Records


def fed(records: Records, pieces) -> list:
    out = []
    for piece in pieces:
        out += records.feed(piece)
    return out


def joined(records) -> bytes:
    return b"".join(record.data for record in records)


def test_lines_one_message_a_line_with_its_offset():
    out = fed(Records("lines", 100), [b"ab\ncd\n"])
    assert out == [Record(0, 0, b"ab\n"), Record(0, 3, b"cd\n")]


def test_a_torn_line_is_held_until_it_ends():
    records = Records("lines", 100, generation=2, position=10)
    assert records.feed(b"abc") == []
    assert records.feed(b"de") == []
    assert records.feed(b"f\ngh") == [Record(2, 10, b"abcdef\n")]
    assert records.held == b"gh" and records.position == 17


def test_a_long_line_is_cut_and_every_part_but_the_last_continues():
    out = fed(Records("lines", 4), [b"0123456789\nab\n"])
    assert out == [Record(0, 0, b"0123", True), Record(0, 4, b"4567", True),
                   Record(0, 8, b"89\n"), Record(0, 11, b"ab\n")]


def test_an_unfinished_long_line_goes_out_in_parts_as_it_grows():
    records = Records("lines", 4)
    assert records.feed(b"012345") == [Record(0, 0, b"0123", True)]
    assert records.feed(b"67") == [Record(0, 4, b"4567", True)]
    assert records.feed(b"\n") == [Record(0, 8, b"\n")]


def test_a_line_exactly_the_largest_message_is_one():
    assert Records("lines", 4).feed(b"abc\n") == [Record(0, 0, b"abc\n")]
    assert Records("lines", 4).feed(b"abcd") == [Record(0, 0, b"abcd", True)]


def test_chunks_pass_through_cut_at_the_chunk_size_never_continuing():
    records = Records("chunks", 1 << 20, position=5)
    out = records.feed(b"x" * (CHUNK_BYTES + 3))
    assert [(r.offset, len(r.data), r.continues) for r in out] == [
        (5, CHUNK_BYTES, False), (5 + CHUNK_BYTES, 3, False)]
    assert records.feed(b"torn") == [Record(0, CHUNK_BYTES + 8, b"torn")]
    assert Records("chunks", 10).feed(b"y" * 25)[-1] == Record(0, 20, b"y" * 5)


def test_replaced_gives_the_old_files_end_then_starts_a_new_generation():
    records = Records("lines", 100)
    assert records.feed(b"a\nno newline") == [Record(0, 0, b"a\n")]
    assert records.replaced() == [Record(0, 2, b"no newline")]
    assert records.feed(b"new\n") == [Record(1, 0, b"new\n")]
    assert records.replaced() == []
    assert records.feed(b"z\n") == [Record(2, 0, b"z\n")]


@pytest.mark.parametrize("mode", ["lines", "chunks"])
def test_any_cut_of_the_input_gives_the_file_back_exactly(mode):
    rng = random.Random(17)
    data = b"".join(b"x" * rng.choice([0, 1, 5, 40, 300]) + b"\n" for _ in range(300)) + b"tail"
    for _ in range(20):
        records, out, start = Records(mode, rng.randint(1, 64)), [], 0
        while start < len(data):
            stop = start + rng.randint(1, 200)
            out += records.feed(data[start:stop])
            start = stop
        out += records.replaced()
        assert joined(out) == data
        ends = [0]
        for record in out:
            assert record.offset == ends[-1]
            ends.append(record.end)
        assert all(len(r.data) <= records.largest for r in out)
        if mode == "lines":
            for record in out[:-1]:
                assert record.continues or record.data.endswith(b"\n")
                assert b"\n" not in record.data[:-1]


def test_bad_arguments():
    with pytest.raises(ValueError):
        Records("words", 10)
    with pytest.raises(ValueError):
        Records("lines", 0)
