// A `/subscribe` client built on Node's `ws`, for interoperability tests.
//
// Usage: node ws_subscribe_client.js URL COUNT [ORIGIN]
// Connects to URL (sending ORIGIN as the Origin header when given), prints
// "open" once the upgrade succeeded, then prints every text message on a
// line of its own. After COUNT messages it prints "done" and closes normally
// (1000). If the server closes first it prints "closed CODE REASON"; if the
// upgrade is refused it prints "refused STATUS". It exits when it is done.
// `ws` comes from tests/peers/node_modules (`npm ci --prefix tests/peers`).

'use strict';

const WebSocket = require('ws');

const [url, countArgument, origin] = process.argv.slice(2);
const count = Number(countArgument);
let received = 0;

const socket = new WebSocket(url, origin ? { origin } : {});

socket.on('open', () => process.stdout.write('open\n'));

socket.on('unexpected-response', (request, response) => {
  process.stdout.write(`refused ${response.statusCode}\n`);
  request.destroy();
});

socket.on('message', (data, isBinary) => {
  if (isBinary || received === count) {
    return;
  }
  process.stdout.write(`${data.toString('utf8')}\n`);
  received += 1;
  if (received === count) {
    process.stdout.write('done\n');
    socket.close(1000);
  }
});

socket.on('close', (code, reason) => {
  if (received < count) {
    process.stdout.write(`closed ${code} ${reason.toString('utf8')}\n`);
  }
});

socket.on('error', (error) => process.stderr.write(`${error.message}\n`));
