"""A `/subscribe` client built on Python's `websockets`, for interoperability tests.

Usage: ws_subscribe_client.py URL COUNT [ORIGIN]
Connects to URL (sending ORIGIN as the Origin header when given), prints
"open" once the upgrade succeeded, then prints every text message on a line
of its own. After COUNT messages it prints "done" and closes normally
(1000). If the server closes first it prints "closed CODE REASON"; if the
upgrade is refused it prints "refused STATUS". It exits when it is done.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def main():
    url, count = sys.argv[1], int(sys.argv[2])
    origin = sys.argv[3] if len(sys.argv) > 3 else None
    try:
        websocket = await connect(url, origin=origin, max_size=None)
    except InvalidStatus as refused:
        print("refused %d" % refused.response.status_code, flush=True)
        return
    async with websocket:
        print("open", flush=True)
        try:
            for _ in range(count):
                message = await websocket.recv()
                print(message, flush=True)
        except ConnectionClosed as closed:
            frame = closed.rcvd
            code = frame.code if frame is not None else None
            reason = frame.reason if frame is not None else ""
            print("closed %s %s" % (code, reason), flush=True)
            return
        print("done", flush=True)


asyncio.run(main())
