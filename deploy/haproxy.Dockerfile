# HAProxy for deploy/compose.yaml: Debian's own haproxy (2.6 in bookworm, the version
# tests/test_server_replicas.c runs on loopback), on the same base image as marsseg-server, so
# the deployment builds from Debian's mirror alone (no Docker Hub image needed).
#   docker build -f deploy/haproxy.Dockerfile -t marsseg-haproxy deploy
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
COPY haproxy.cfg /usr/local/etc/haproxy/haproxy.cfg
# Debian's package runs as its own user `haproxy`; ports above 1023 need no privileges
USER haproxy
EXPOSE 8080
STOPSIGNAL SIGUSR1
# -W master-worker, -db foreground (logs to stderr), SIGUSR1 a soft stop that lets requests finish
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
