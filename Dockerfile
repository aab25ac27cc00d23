# syntax=docker/dockerfile:1
# trustgate: build with the dev toolchain, run with production dependencies only, as non-root.

FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY config.yaml /etc/trustgate/config.yaml
COPY policies /etc/trustgate/policies
# The "node" user (uid 1000) ships with the image. Trust state goes to config.yaml's stateDir
# (./var/trustgate beside the config): a volume the user owns.
RUN mkdir -p /etc/trustgate/var/trustgate && chown node:node /etc/trustgate/var/trustgate
USER node
VOLUME ["/etc/trustgate/var/trustgate"]
EXPOSE 5000
ENTRYPOINT ["node", "/app/dist/cli.js"]
# In a container, listen on all interfaces; config.yaml's default is loopback only.
CMD ["serve", "--config", "/etc/trustgate/config.yaml", "--listen", "0.0.0.0:5000"]
