"""WebSocket upstreams built on Python's `websockets`, for the permessage-deflate
interoperability tests: one server per configuration named on the command line.

Usage: ws_deflate_server.py CONFIG...
Each CONFIG is NAME[:OPTION=VALUE,...] with options server_max_window_bits,
client_max_window_bits (8..15), server_no_context_takeover and
client_no_context_takeover (1) and require (1: answer 403 to a handshake
that does not offer permessage-deflate). With no option, websockets' own
defaults apply. Prints one line `NAME PORT` per server, then serves.

To every client it sends, first, a hello: {"cfg": NAME, "negotiated": the
Sec-WebSocket-Extensions it answered} once a line `go` arrived on its
standard input (so that the test can wait until the client is ready to
deliver what it receives); then messages that check themselves:
text {"cfg", "seq", "sha", "body"} (sha = SHA-256 of body) and binary (the
first 32 bytes are the SHA-256 of the rest), of many sizes, compressible or
not, some split into fragments; then it echoes each text message it receives
as {"cfg", "echo": the text, "compressed": whether its frame had RSV1}.
It exits when its standard input closes (the test that started it is gone).
"""

import asyncio
import hashlib
import http
import json
import random
import sys

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

# Notes whether the last data frame a connection's extension decoded had RSV1.
_original_decode = PerMessageDeflate.decode


def _recording_decode(self, frame, *, max_size=None):
    if frame.opcode.name in ("TEXT", "BINARY"):
        self.last_rsv1 = frame.rsv1
    return _original_decode(self, frame, max_size=max_size)


PerMessageDeflate.decode = _recording_decode


def messages(name):
    if name not in _MESSAGES:
        _MESSAGES[name] = list(generate(name))
    return _MESSAGES[name]


_MESSAGES = {}


def generate(name):
    rng = random.Random(name)
    for seq in range(40):
        size = [10, 200, 1500, 20_000, 70_000][seq % 5]
        if seq % 3 == 0:
            body = "".join(rng.choice("abcdef ") for _ in range(size))
        else:
            body = ("%s tick %d " % (name, seq)) * (size // 12 + 1)
        if seq % 4 == 3:
            raw = rng.randbytes(size) if seq % 8 == 3 else body.encode()
            yield hashlib.sha256(raw).digest() + raw
        else:
            sha = hashlib.sha256(body.encode()).hexdigest()
            yield json.dumps({"cfg": name, "seq": seq, "sha": sha, "body": body})


GO = None


async def session(websocket, name):
    await GO.wait()
    negotiated = websocket.response.headers.get("Sec-WebSocket-Extensions", "")
    await websocket.send(json.dumps({"cfg": name, "negotiated": negotiated}))
    for seq, message in enumerate(messages(name)):
        if seq % 7 == 5:
            third = len(message) // 3
            await websocket.send([message[:third], message[third : 2 * third], message[2 * third :]])
        else:
            await websocket.send(message)
    async for received in websocket:
        if isinstance(received, str):
            extensions = websocket.protocol.extensions
            compressed = bool(extensions and getattr(extensions[0], "last_rsv1", False))
            await websocket.send(json.dumps({"cfg": name, "echo": received, "compressed": compressed}))


def factory(options):
    keys = ("server_max_window_bits", "client_max_window_bits")
    kwargs = {key: int(options[key]) for key in keys if key in options}
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        if options.get(flag) == "1":
            kwargs[flag] = True
    return ServerPerMessageDeflateFactory(**kwargs)


def requires_deflate(connection, request):
    if "permessage-deflate" not in request.headers.get("Sec-WebSocket-Extensions", ""):
        return connection.respond(http.HTTPStatus.FORBIDDEN, "permessage-deflate required\n")
    return None


async def start(spec):
    name, _, rest = spec.partition(":")
    options = dict(item.split("=", 1) for item in rest.split(",") if item)
    server = await serve(
        lambda ws: session(ws, name),
        "127.0.0.1",
        0,
        extensions=[factory(options)],
        compression=None,
        max_size=None,
        process_request=requires_deflate if options.get("require") == "1" else None,
    )
    print(name, server.sockets[0].getsockname()[1], flush=True)
    return server


def read_stdin(loop):
    for line in sys.stdin:
        if line.strip() == "go":
            loop.call_soon_threadsafe(GO.set)


async def main():
    global GO
    GO = asyncio.Event()
    servers = [await start(spec) for spec in sys.argv[1:]]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, read_stdin, loop)
    for server in servers:
        server.close()


asyncio.run(main())
