"""A WebSocket upstream that reports how each client closed, for shutdown tests.

Usage: ws_close_recorder.py
Listens on 127.0.0.1 on a free port and prints "port N". Each client gets a
numbered text message every 20 ms; when a client goes, it prints
"closed CODE REASON" (CODE is None when no close frame came). Exits when its
standard input closes.
"""

import asyncio
import json
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def tick(websocket):
    seq = 0
    try:
        while True:
            await websocket.send(json.dumps({"seq": seq}))
            seq += 1
            await asyncio.sleep(0.02)
    except ConnectionClosed as closed:
        frame = closed.rcvd
        code = frame.code if frame is not None else None
        reason = frame.reason if frame is not None else ""
        print("closed %s %s" % (code, reason), flush=True)


async def main():
    async with serve(tick, "127.0.0.1", 0) as server:
        print("port %d" % server.sockets[0].getsockname()[1], flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main())
