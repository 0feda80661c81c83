import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { metricValue } from '../support/metrics.js';
import { startGateway } from './harness.js';

/** `payment_node_ready` says what /readyz answers (PaymentNodeNotReady reads it): 1 ready, 0 draining. */
describe('payment_node_ready', () => {
  it('is 1 while /readyz answers 200 and 0 once the node drains', async () => {
    const gw = await startGateway();
    try {
      const ready = async () => {
        const readyz = (await fetch(`${gw.base}/readyz`)).status;
        const text = await (await fetch(`${gw.base}/metrics`)).text();
        assert.match(text, /^payment_node_ready [01]$/m);
        return { readyz, metric: metricValue(text, 'payment_node_ready') };
      };
      assert.deepEqual(await ready(), { readyz: 200, metric: 1 });
      gw.stack.gateway.drain();
      assert.deepEqual(await ready(), { readyz: 503, metric: 0 });
    } finally {
      await gw.close();
    }
  });
});
