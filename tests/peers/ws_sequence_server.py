"""A WebSocket upstream built on Python's `websockets`, for interoperability tests.

Usage: ws_sequence_server.py COUNT
Listens on 127.0.0.1 on a free port, prints the port on a line of its own,
and sends every client COUNT messages numbered 0..COUNT-1: JSON text
messages, every fifth one as a binary message, every seventh one split into
fragments. Then it keeps the connection open until the client closes.
It exits when its standard input closes (the test that started it is gone).
"""

import asyncio
import json
import sys

from websockets.asyncio.server import serve


async def send_sequence(websocket, count):
    for seq in range(count):
        text = json.dumps({"seq": seq, "symbol": "SYM%d" % (seq % 3)})
        if seq % 5 == 4:
            await websocket.send(text.encode("utf-8"))
        elif seq % 7 == 3:
            half = len(text) // 2
            await websocket.send([text[:half], text[half:]])
        else:
            await websocket.send(text)
    await websocket.wait_closed()


async def main():
    count = int(sys.argv[1])
    async with serve(lambda ws: send_sequence(ws, count), "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main())
