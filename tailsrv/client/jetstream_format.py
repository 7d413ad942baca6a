"""How a file is laid out in a NATS JetStream stream: what every message carries.

A message is one line of the file (or a chunk of it, or a part of a line too long for
the server's maximum payload), and its headers say where its first byte stands in
which file. The position travels with the data: a publisher that restarts finds where
it stopped in the stream itself, not in an offset store beside it, and a reader
rebuilds each file byte for byte. ``tspub`` writes this layout; ``tscat`` and
``tssync`` read it. Pure: names and the rules both sides read them by, no I/O.
"""

from typing import Mapping, Optional, Tuple

#: The byte position of the message's first byte in its file.
OFFSET = "Tailsrv-Offset"

#: 0 for the first file, one more each time the file was replaced (rotated,
#: truncated, or a resume proof refused).
GENERATION = "Tailsrv-Generation"

#: On every part of a split line but the last: "1".
CONTINUES = "Tailsrv-Continues"

#: JetStream's own de-duplication header.
MSG_ID = "Nats-Msg-Id"


def message_id(subject: str, generation: int, offset: int, end: int) -> str:
    """The ``Nats-Msg-Id`` of the message holding bytes ``offset`` to ``end``
    of file ``generation``: one value per place in the stream's history, so
    JetStream drops a second publication of the same bytes. It names the end
    too, so that a message naming its predecessor's id
    (``Nats-Expected-Last-Msg-Id``) is stored only after one that ends exactly
    where it starts, whoever published it."""
    return f"{subject}/{generation}/{offset}-{end}"


#: Characters a subject the tools use may not hold: wildcards, whitespace.
SUBJECT_FORBIDDEN = frozenset("*> \t\r\n")


def valid_subject(text: str) -> bool:
    """Whether ``text`` names one subject: dot-separated tokens, none empty,
    no wildcard or space."""
    return bool(text) and all(text.split(".")) and not SUBJECT_FORBIDDEN.intersection(text)


def position(headers: Optional[Mapping[str, str]]) -> Optional[Tuple[int, int]]:
    """A stored message's ``(generation, offset)``, from its headers; None when
    they do not say (a message tspub did not publish)."""
    try:
        return int(headers[GENERATION]), int(headers[OFFSET])
    except (KeyError, TypeError, ValueError):
        return None
