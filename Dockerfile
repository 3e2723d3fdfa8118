# syntax=docker/dockerfile:1
# pgferry container image: `docker build -t pgferry .`, then
#   docker run --rm -p 8484:8484 -e PGFERRY_SOURCE_URL=... -e PGFERRY_TARGET_URL=... pgferry start
# Only production dependencies end up in the image (no TypeScript, no embedded PostgreSQL servers,
# so `pgferry demo` is not available in it).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the build needs only the TypeScript compiler, not the embedded servers' binaries.
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    PGFERRY_HTTP_HOST=0.0.0.0 \
    PGFERRY_HTTP_PORT=8484
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config/pgferry.example.yaml ./config/
RUN chmod 755 dist/cli.js && ln -s /app/dist/cli.js /usr/local/bin/pgferry
# The node image's unprivileged user (uid 1000).
USER node
EXPOSE 8484
# Liveness only: /readyz (connected to both sides, not failed) is for orchestrators that route traffic.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PGFERRY_HTTP_PORT || 8484) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# pgferry is PID 1 and handles SIGTERM itself: it commits and confirms the transaction in flight
# (up to 20 s), so give `docker stop` more than its default 10 s (--time 30, or stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["pgferry"]
CMD ["start"]
