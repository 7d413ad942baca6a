"""Print the file that tspub publishes to a JetStream subject, and follow it.

Usage: python jetstream_consumer.py nats://HOST:PORT SUBJECT
"""
import asyncio
import sys

import nats


async def main(url: str, subject: str) -> None:
    nc = await nats.connect(url)
    sub = await nc.jetstream().subscribe(subject, ordered_consumer=True)
    async for msg in sub.messages:  # in stream order, each message once
        if msg.headers["Tailsrv-Offset"] == "0" and msg.headers["Tailsrv-Generation"] != "0":
            print("file replaced", file=sys.stderr)
        sys.stdout.buffer.write(msg.data)
        sys.stdout.buffer.flush()

asyncio.run(main(*sys.argv[1:]))
