# qatserve: API + one training worker in one container (`qatserve serve`), as a non-root user,
# with everything it keeps (SQLite database, checkpoints, models, datasets) in the /data volume.
# Not built in the project's CI (no Docker engine there); keep it plain.
#
# The container listens on 0.0.0.0, so the server refuses to start until an API key exists.
# Create the first admin key in the volume (it is printed once, as the last line), then start:
#
#   docker build -t qatserve .
#   docker run --rm -v qatserve-data:/data qatserve keys create --name admin --scopes admin
#   docker run -d --name qatserve -p 3000:3000 -v qatserve-data:/data qatserve
#   curl -H "Authorization: Bearer <key>" localhost:3000/v1/jobs
#
# More keys: `docker exec qatserve node dist/cli.js keys create --name ci --scopes train`, or
# POST /v1/keys with the admin key. A bind mount instead of a named volume must be writable by
# uid 1000 (the image's `node` user).
# It writes only under /data, so `docker run --read-only` works (README, "Docker").
#
# The same image runs `api` and `worker` of a fleet sharing PostgreSQL and Redis (README, "Docker");
# give a worker container `-e MALLOC_MMAP_THRESHOLD_=65536` (an idle worker then returns a job's
# memory) but not an API container (it serves about 13% fewer predictions with it).

# --- build: compile TypeScript and generate the Prisma clients ---
# Node 24: the active LTS (Node 20 reached end of life on 2026-04-30). The code also runs on 20.
FROM node:24-bookworm AS build
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev

# --- runtime ---
FROM node:24-bookworm-slim
# redis-server lets `qatserve serve` run standalone; set REDIS_URL to use an external Redis instead.
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# HOST=0.0.0.0 is the explicit choice to be reachable from outside the container. DATABASE_URL is
# left unset so it defaults to file:$DATA_DIR/qatserve.db, inside the volume with the artifacts.
ENV NODE_ENV=production PORT=3000 HOST=0.0.0.0 DATA_DIR=/data
# The application stays root-owned (read-only to the server); only /data is the server's.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/generated ./generated
COPY --from=build /app/prisma ./prisma
COPY --from=build /app/web ./web
COPY --from=build /app/openapi.yaml ./
# Group 0 may write /data too: OpenShift (and Kubernetes with a random runAsUser) runs the image as
# an arbitrary uid in group 0, which the node-owned 755 /data refused. Nothing else needs the uid:
# `qatserve serve` ran, trained, exported and predicted as uid 1000830000 gid 0 with no passwd
# entry and HOME=/ (setpriv, a group-0 writable DATA_DIR).
RUN mkdir -p /data && chown node:0 /data && chmod 775 /data
USER node
VOLUME /data
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve"]
