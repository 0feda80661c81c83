/**
 * Baseline (a): the HTTP ceiling of this machine. uWebSockets.js answering every request with a fixed
 * small JSON after reading the whole body (what any real handler must do), nothing else: no auth check,
 * no validation, no Kafka. `node --import tsx bench/baselines/uws-hello.ts <port>`; prints "listening"
 * when ready.
 */
import uWS from 'uWebSockets.js';

const port = Number(process.argv[2] ?? 18080);
const answer = JSON.stringify({ id: 'pay_hello', object: 'payment', status: 'succeeded', amount: 100 });

uWS
  .App()
  .any('/*', (res, req) => {
    const method = req.getMethod();
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const reply = () => {
      if (aborted) return;
      res.cork(() => {
        res
          .writeStatus(method === 'post' ? '201 Created' : '200 OK')
          .writeHeader('content-type', 'application/json')
          .end(answer);
      });
    };
    if (method !== 'post') return reply();
    res.onData((_chunk, last) => {
      if (last) reply();
    });
  })
  .listen('127.0.0.1', port, (token) => {
    if (!token) {
      process.stderr.write(`uws-hello: cannot listen on ${port}\n`);
      process.exit(1);
    }
    process.stdout.write(`listening ${port}\n`);
  });
process.on('SIGTERM', () => process.exit(0));
