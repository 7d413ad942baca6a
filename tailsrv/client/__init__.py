"""The client side: `follow` and `follow_lines` (``follower``), and the client
scripts, ``tscat`` and ``tssync``, with what they share (``tool``); ``tspub``
(``publisher``, with ``records`` and ``jetstream_format``), which puts the file
into NATS JetStream. Only ``publisher`` imports nats-py, and nothing here
imports ``publisher``: following a server needs no NATS.

Imports only the shared rules and utilities at the package's top; never the
server side, so that a client needs none of it.
"""

from .follower import (BadAddress, ProtocolError, Replaced, follow, follow_lines, list_files,
                       parse_address)

__all__ = ["BadAddress", "ProtocolError", "Replaced", "follow", "follow_lines", "list_files",
           "parse_address"]
