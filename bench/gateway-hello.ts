/**
 * Fallback target (a) of `npm run bench:gateway`, used only when bench/baselines/uws-hello.ts (the shared
 * baseline) is absent: uWebSockets.js reading the whole POST body and answering a fixed small JSON 201.
 * No auth, no validation, no Kafka. `node --import tsx bench/gateway-hello.ts <port>` prints "listening".
 */
import uWS from 'uWebSockets.js';

const port = Number(process.argv[2] ?? 18080);
const answer = JSON.stringify({ id: 'pay_hello', object: 'payment', status: 'succeeded', amount: 100 });

uWS
  .App()
  .any('/*', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    res.onData((_chunk, last) => {
      if (!last || aborted) return;
      res.cork(() => {
        res.writeStatus('201 Created').writeHeader('content-type', 'application/json').end(answer);
      });
    });
  })
  .listen('127.0.0.1', port, (token) => {
    if (!token) {
      process.stderr.write(`gateway-hello: cannot listen on ${port}\n`);
      process.exit(1);
    }
    process.stdout.write(`listening ${port}\n`);
  });
process.on('SIGTERM', () => process.exit(0));
