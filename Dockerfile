# syntax=docker/dockerfile:1
# Relay: one image for `relay router` and `relay connector` (docker-compose.yml picks the command).

# ---- build: dependencies, the zstd addons (see scripts/build-zstd.sh), tsc ----
FROM node:20-bookworm-slim AS build
# node-gyp needs python3, make and g++; @mongodb-js/zstd links against libzstd, zstd-napi compiles
# the zstd sources it ships (see scripts/build-zstd.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libzstd-dev python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Build native addons against the headers shipped in the image instead of downloading them.
ENV npm_config_nodedir=/usr/local CI=true
COPY package.json package-lock.json tsconfig.json tsconfig.web.json ./
COPY scripts ./scripts
COPY bin ./bin
COPY src ./src
COPY web ./web
# postinstall: scripts/build-zstd.sh (zstd addons) and `npm run build` (tsc → dist/)
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
RUN npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime: node, libzstd1, production node_modules, dist/src, the web pages ----
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libzstd1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/web ./dist/web
COPY --from=build /app/web ./web
COPY --from=build /app/bin ./bin
USER node
EXPOSE 8080
# --max-semi-space-size for the router and the connector: src/cli/node-flags.ts (V8 reads it
# at start; for the other commands it is only a ceiling the young generation rarely reaches).
ENTRYPOINT ["node", "--max-semi-space-size=32", "/app/bin/relay.js"]
CMD ["--help"]
