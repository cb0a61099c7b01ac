// WebSocket upstreams built on Node's `ws` with `perMessageDeflate`, for the
// permessage-deflate interoperability tests; the counterpart of
// ws_deflate_server.py, speaking the same messages.
//
// Usage: node ws_deflate_server.js CONFIG...
// Each CONFIG is NAME[:OPTION=VALUE,...] with the options of ws's
// perMessageDeflate (serverMaxWindowBits, clientMaxWindowBits,
// serverNoContextTakeover, clientNoContextTakeover; threshold 0 unless set).
// Prints one line `NAME PORT` per server, then serves each client, once a
// line `go` arrived on its standard input: a hello
// {"cfg", "negotiated"}, then 40 self-checking messages (text
// {"cfg", "seq", "sha", "body"} with sha the SHA-256 of body; binary whose
// first 32 bytes are the SHA-256 of the rest), some sent in fragments; then
// it echoes each text message as {"cfg", "echo", "compressed"}.
// It exits when its standard input closes.
// `ws` comes from tests/peers/node_modules (`npm ci --prefix tests/peers`).

'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

function options(text) {
  const perMessageDeflate = { threshold: 0 };
  for (const item of text ? text.split(',') : []) {
    const [key, value] = item.split('=');
    perMessageDeflate[key] = key.endsWith('Bits') || key === 'threshold' ? Number(value) : value === '1';
  }
  return perMessageDeflate;
}

// A seeded generator, so that every run sends the same messages.
function generator(seed) {
  let state = 0;
  for (const c of seed) state = (state * 31 + c.charCodeAt(0)) >>> 0;
  return () => {
    state = (state * 1103515245 + 12345) >>> 0;
    return state >>> 16;
  };
}

function* messages(name) {
  const next = generator(name);
  for (let seq = 0; seq < 40; seq++) {
    const size = [10, 200, 1500, 20000, 70000][seq % 5];
    let body;
    if (seq % 3 === 0) {
      body = Array.from({ length: size }, () => 'abcdef '[next() % 7]).join('');
    } else {
      body = `${name} tick ${seq} `.repeat(Math.floor(size / 12) + 1);
    }
    if (seq % 4 === 3) {
      const raw = seq % 8 === 3 ? Buffer.from(Array.from({ length: size }, () => next() & 0xff)) : Buffer.from(body);
      const sha = crypto.createHash('sha256').update(raw).digest();
      yield Buffer.concat([sha, raw]);
    } else {
      const sha = crypto.createHash('sha256').update(body).digest('hex');
      yield JSON.stringify({ cfg: name, seq, sha, body });
    }
  }
}

function send(socket, message, fragmented) {
  if (!fragmented) {
    socket.send(message);
    return;
  }
  const binary = Buffer.isBuffer(message);
  const bytes = binary ? message : Buffer.from(message);
  const third = Math.floor(bytes.length / 3);
  // A text message split at byte boundaries is still one valid message once whole.
  socket.send(bytes.subarray(0, third), { binary, fin: false });
  socket.send(bytes.subarray(third, 2 * third), { binary, fin: false });
  socket.send(bytes.subarray(2 * third), { binary, fin: true });
}

function start(spec) {
  const [name, rest] = spec.split(':');
  const server = new WebSocket.Server({ host: '127.0.0.1', port: 0, perMessageDeflate: options(rest) });
  server.on('headers', (headers, request) => {
    const answer = headers.find((line) => line.toLowerCase().startsWith('sec-websocket-extensions:'));
    request.negotiated = answer ? answer.slice(answer.indexOf(':') + 1).trim() : '';
  });
  server.on('connection', async (socket, request) => {
    // Listening from the start: what arrives before `go` is echoed after it.
    socket.on('message', async (data, isBinary) => {
      if (isBinary) return;
      const compressed = Boolean(socket._receiver && socket._receiver._compressed);
      await go;
      socket.send(JSON.stringify({ cfg: name, echo: data.toString(), compressed }));
    });
    await go;
    socket.send(JSON.stringify({ cfg: name, negotiated: request.negotiated }));
    let seq = 0;
    for (const message of messages(name)) {
      send(socket, message, seq % 7 === 5);
      seq++;
    }
  });
  return new Promise((resolve) => {
    server.on('listening', () => {
      process.stdout.write(`${name} ${server.address().port}\n`);
      resolve(server);
    });
  });
}

let release;
const go = new Promise((resolve) => {
  release = resolve;
});

(async () => {
  const servers = [];
  for (const spec of process.argv.slice(2)) servers.push(await start(spec));
  process.stdin.on('data', (data) => {
    if (data.toString().split('\n').includes('go')) release();
  });
  process.stdin.resume();
  process.stdin.on('end', () => {
    for (const server of servers) server.close();
    process.exit(0);
  });
})();
