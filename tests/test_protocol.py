"""The header grammar, fed as bytes in memory: no sockets (the atheris run is a
subprocess, but still no network)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz_header import check_stream
from hypothesis import given, settings, strategies as st

from tailsrv.protocol import (MAX_HEADER_BYTES, MAX_OFFSET, MIN_OFFSET, PROOF_BYTES, REFUSAL,
                              BadHeader, HeaderReader, Proof, Request, announcement,
                              byte_position, digest, make_proof, parse_header, proof_holds,
                              proof_span)

#: The digest of b"world\n", as the protocol documentation's example has it.
WORLD = b"ea4ec125b82d5527"


@pytest.mark.parametrize("header, expected", [
    (b"0", Request(0)),
    (b"1000", Request(1000)),
    (b"-1000", Request(-1000)),
    (b"+5", Request(5)),
    (b"  42\r", Request(42)),
    (b"\t-7 ", Request(-7)),
    (b"-0", Request(0)),
    (b"007", Request(7)),
    (b"-10l", Request(-10, lines=True)),
    (b"25L", Request(25, lines=True)),
    (b"0l", Request(0, lines=True)),
    (b"-10l?", Request(-10, lines=True, announce=True)),
    (b" -5? \r", Request(-5, announce=True)),
    (str(MAX_OFFSET).encode(), Request(MAX_OFFSET)),
    (str(MIN_OFFSET).encode(), Request(MIN_OFFSET)),
    (b"12#6:" + WORLD, Request(12, announce=True, proof=Proof(6, WORLD))),
    (b" +12?#6:" + WORLD.upper() + b"\r", Request(12, announce=True, proof=Proof(6, WORLD))),
    (b"5000#4096:" + WORLD, Request(5000, announce=True, proof=Proof(4096, WORLD))),
    (b"1#1:" + WORLD, Request(1, announce=True, proof=Proof(1, WORLD))),
])
def test_accepts(header, expected):
    assert parse_header(header) == expected


@pytest.mark.parametrize("header", [
    b"", b"   ", b"\r", b"abc", b"1_000", b"\xd9\xa1", "١٢".encode(), b"1.5", b"0x10",
    b"--1", b"+-1", b"- 1", b"1 2", b"l", b"-l", b"10ll", b"1e3", b"?", b"-?", b"5?l", b"5??", b"\x00", b"1\x00",
    str(MAX_OFFSET + 1).encode(), str(MIN_OFFSET - 1).encode(), b"9" * 40,
    b"#6:" + WORLD, b"12#", b"12#6", b"12#6:", b"12#:" + WORLD, b"12#6:" + WORLD[:-1],
    b"12#6:" + WORLD + b"0", b"12#6:" + WORLD[:-1] + b"g", b"12#06x:" + WORLD,
    b"12#-6:" + WORLD, b"5000#4097:" + WORLD, b"5000#10000:" + WORLD, b"12#6:" + WORLD + b"?",
    b"12 #6:" + WORLD, b"12#6: " + WORLD, b"12#6:#6:" + WORLD, b"12#0:" + WORLD, b"0#0:" + WORLD,
    b"5#6:" + WORLD, b"-12#6:" + WORLD, b"12l#6:" + WORLD, b"-1#0:" + WORLD,
])
def test_rejects(header):
    with pytest.raises(BadHeader):
        parse_header(header)


def test_reader_waits_for_newline_and_ignores_the_rest():
    reader = HeaderReader()
    assert reader.feed(b"12") is None
    assert reader.feed(b"3\nGARBAGE\nmore") == Request(123)


def test_reader_crlf():
    assert HeaderReader().feed(b"-5\r\n") == Request(-5)


def test_reader_rejects_long_header_before_newline():
    reader = HeaderReader()
    assert reader.feed(b" " * MAX_HEADER_BYTES) is None
    with pytest.raises(BadHeader, match="longer"):
        reader.feed(b" ")


def test_reader_rejects_long_header_with_newline():
    with pytest.raises(BadHeader, match="longer"):
        HeaderReader().feed(b" " * (MAX_HEADER_BYTES + 1) + b"1\n")


def test_reader_rejects_eof():
    reader = HeaderReader()
    reader.feed(b"1")
    with pytest.raises(BadHeader, match="closed"):
        reader.feed(b"")


@pytest.mark.parametrize("offset, size, expected", [
    (0, 10, 0), (5, 10, 5), (20, 10, 20), (-3, 10, 7), (-30, 10, 0), (-10, 10, 0),
])
def test_byte_position(offset, size, expected):
    assert byte_position(offset, size) == expected


@given(st.integers(MIN_OFFSET, MAX_OFFSET), st.sampled_from(["", "l", "L", "l?", "?"]),
       st.sampled_from(["", "+"]), st.text(" \t\r", max_size=5), st.text(" \t\r", max_size=5))
def test_round_trip(value, unit, plus, before, after):
    sign = plus if value >= 0 else ""
    header = f"{before}{sign}{value}{unit}{after}".encode()
    assert parse_header(header) == Request(value, lines="l" in unit.lower(),
                                           announce="?" in unit)


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_reject_cleanly(data):
    """No input makes the parser fail with anything but BadHeader, and what it
    accepts is exactly what the grammar allows."""
    try:
        request = parse_header(data)
    except BadHeader:
        return
    text = data.strip(b" \t\r\x0b\x0c").partition(b"#")[0]
    text = text.removesuffix(b"?").rstrip(b"lL")
    assert int(text) == request.offset
    assert text.lstrip(b"+-").isdigit()


@given(st.binary(max_size=200), st.integers(1, 20))
def test_reader_any_chunking(data, step):
    """Feeding in any chunks gives the same answer as feeding at once."""
    def run(chunks):
        reader = HeaderReader()
        try:
            for chunk in chunks:
                result = reader.feed(chunk)
                if result is not None:
                    return result
        except BadHeader:
            return "bad"
        return None

    chunks = [data[i:i + step] for i in range(0, len(data), step)]
    assert run(chunks) == run([data] if data else [])


def test_announcement():
    assert announcement(12345) == b"12345\n"


def test_digest_is_blake2b_of_8_bytes_in_hex():
    assert digest(b"world\n") == WORLD
    # digest_size=8 is a parameter of BLAKE2b, not a truncation of its 64-byte digest
    assert digest(b"") == b"e4a6a0577479b2b4"


@given(st.binary(min_size=1, max_size=3 * PROOF_BYTES))
def test_a_proof_holds_for_the_same_bytes_only(received):
    """What a client proves from the bytes it received holds against a file
    with those bytes, and against no file that is shorter or differs."""
    proof = make_proof(received)
    assert proof.length == min(len(received), PROOF_BYTES)
    position = 1000 + len(received)
    request = parse_header(b"%d%s" % (position, proof.encode()))
    start, length = proof_span(request)
    assert (start, length) == (position - proof.length, proof.length)
    file = b"x" * 1000 + received + b"more"
    assert proof_holds(request, file[start:start + length])
    assert not proof_holds(request, file[start:start + length - 1])  # shorter than position
    changed = bytearray(file[start:start + length])
    changed[-1] ^= 1
    assert not proof_holds(request, bytes(changed))
    assert make_proof(b"") is None  # nothing received: nothing to prove


def test_the_longest_header_with_a_proof_fits():
    header = b"%d?%s" % (MAX_OFFSET, make_proof(b"x" * PROOF_BYTES).encode())
    assert len(header) <= MAX_HEADER_BYTES
    assert HeaderReader().feed(header + b"\n").proof.length == PROOF_BYTES


def test_the_refusal_cannot_be_taken_for_an_announcement():
    assert REFUSAL.endswith(b"\n") and not REFUSAL[:1].isdigit()


#: Pieces a header is made of, and pieces that break one, for the fuzz test to
#: combine: random bytes alone rarely come near the grammar.
HEADER_PIECES = st.one_of(
    st.sampled_from([b"0", b"7", b"9" * 19, b"-", b"+", b"l", b"L", b"?", b" ", b"\t",
                     b"\r", b"\x0b", b"\n", b"\x00", b"_", b"\xd9\xa1", b" " * 60,
                     b"#", b":", b"#6:", b"#4096:", WORLD, WORLD[:8]]),
    st.binary(max_size=4))


@settings(max_examples=3000, deadline=None)
@given(st.lists(HEADER_PIECES, max_size=40).map(b"".join), st.integers(1, 16))
def test_fuzz_header_reader(stream, step):
    """Many generated streams, each fed in chunks: see fuzz_header.check_stream."""
    check_stream(stream, step)


def test_fuzz_header_reader_with_atheris(tmp_path):
    """libFuzzer-guided inputs for a few seconds, in a subprocess; a crash
    (any exception but BadHeader) makes it exit non-zero."""
    pytest.importorskip("atheris")
    fuzz = Path(__file__).with_name("fuzz_header.py")
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run([sys.executable, str(fuzz), "-max_total_time=4", "-rss_limit_mb=1024",
                           f"-artifact_prefix={tmp_path}/"], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    assert b"Done " in proc.stderr
