# syntax=docker/dockerfile:1
# Payment node image. Build:  docker build -t payment-node .
# Run:  docker run --init -p 8080:8080 -e KAFKA_BROKERS=host:9092 -e REDIS_URL=redis://host:6379 \
#         -e NODE_ID=node-1 -e API_KEYS=merchant:key -e VAULT_KEYS=kid:base64key -e VAULT_ACTIVE_KEY_ID=kid \
#         -e VAULT_FINGERPRINT_KEY=base64key payment-node
# (--init: a real PID 1 reaps children and forwards signals; node.ts drains on SIGTERM.)
# NODE_ENV=production refuses insecure defaults: API_KEYS and the three VAULT_* keys must be set
# (from a secret store / KMS, never baked into the image).

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: full dependencies, TypeScript → dist/ (plus the Lua scripts copy-assets puts there)
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY config ./config
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies only, non-root, read-only application files
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
# The default host is 127.0.0.1 (safe on a laptop); in a container the port must be reachable from outside.
ENV HOST=0.0.0.0 PORT=8080
WORKDIR /app
# uWebSockets.js is an npm alias of @trufflesuite/uws-js-unofficial, whose prebuilt binaries
# need glibc: bookworm-slim has it (an Alpine/musl base would not work).
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# src/config.ts reads ../config/default.json relative to dist/config.js.
COPY config ./config
# Files stay root-owned: the app only reads them. It runs as the image's unprivileged `node` user.
USER node
EXPOSE 8080
# slim has no curl: probe /healthz with node's built-in fetch.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
CMD ["node", "dist/node.js"]
