// Worker-thread entry: registers tsx in this thread (Node 20 does not carry `--import tsx` hooks into
// workers reliably), then loads the TypeScript worker.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
