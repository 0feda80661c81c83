// Copies non-TypeScript runtime assets (Lua scripts) next to the compiled JS in dist/.
import { cpSync, readdirSync } from 'node:fs';

for (const file of readdirSync('src/streams').filter((f) => f.endsWith('.lua'))) {
  cpSync(`src/streams/${file}`, `dist/streams/${file}`);
}
