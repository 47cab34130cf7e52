# marsseg-server: the HTTP service and dashboard in a container.
#
#   docker build -t marsseg-server .
#   docker run -d --name marsseg -p 8080:8080 -v marsseg:/data --stop-timeout 60 marsseg-server
#   docker run --rm marsseg-server --help            # any subcommand: train, eval, segment, ...
#
# Data-parallel training (README, "Data-parallel training"): the variant built with
# --build-arg MARSSEG_MPI=1 ships the MPI build of the binary (the same service otherwise) and
# Open MPI's mpirun (plus ssh for other hosts):
#   docker build --build-arg MARSSEG_MPI=1 -t marsseg-server:mpi .
#   docker run --rm --shm-size=512m --entrypoint mpirun marsseg-server:mpi -np 2 \
#     marsseg train --data /opt/marsseg/datasets/sample.npz --epochs 2 --out runs/r1
#
# Configuration: the binary's own environment variables (marsseg serve --help), e.g.
# -e MARSSEG_TOKEN=secret. Jobs, uploaded datasets, trained models and the active-model choice
# live in /data: keep it on a volume. On `docker stop` (SIGTERM) the service stops accepting,
# pauses a running job with a mid-epoch checkpoint and exits 0; the job resumes by itself on the
# next start. Give it time with --stop-timeout / `docker stop -t` (Docker's default is 10 s).
#
# Classic builder syntax only (no "# syntax=" line, no BuildKit features): builds with
# `docker build`, podman and buildah alike.

# ---------------------------------------------------------------- build stage
FROM debian:bookworm-slim AS build
# lets `tests/docker.sh --rmi` prune this stage's leftover image too
LABEL marsseg.stage=build
WORKDIR /src
# The project's own dependency script installs what `make` needs (gcc, make, pkg-config and the
# -dev packages, including libopenblas-openmp-dev); the Makefile re-runs it as a check.
COPY tools/deps.sh tools/deps.sh
RUN bash tools/deps.sh && rm -rf /var/lib/apt/lists/*
COPY Makefile ./
COPY include include
COPY core core
COPY cli cli
COPY server server
COPY openapi openapi
# The Makefile compiles for x86-64-v3 (AVX2/FMA), so the image needs such a CPU. For older ones:
#   docker build --build-arg MARSSEG_OPT="-O2 -march=x86-64" -t marsseg-server .
# (Not named OPT: a build arg is an environment variable, and an empty OPT in the environment
# would override the Makefile's `OPT ?=` and build without optimisation.)
ARG MARSSEG_OPT
# MARSSEG_MPI=1: the binary is the MPI build (make MPI=1, build-mpi/; deps.sh installed Open MPI)
ARG MARSSEG_MPI=0
RUN make -j"$(nproc)" build/marsseg ${MARSSEG_OPT:+"OPT=$MARSSEG_OPT"} && ./build/marsseg --help >/dev/null \
 && if [ "$MARSSEG_MPI" = 1 ]; then \
      make -j"$(nproc)" MPI=1 build-mpi/marsseg ${MARSSEG_OPT:+"OPT=$MARSSEG_OPT"} && cp build-mpi/marsseg build/marsseg \
      && ./build/marsseg --help >/dev/null; \
    fi

# ---------------------------------------------------------------- runtime stage
FROM debian:bookworm-slim
# Only the shared libraries the binary links (ldd build/marsseg): the OpenMP build of OpenBLAS
# (found through the binary's rpath, /usr/lib/x86_64-linux-gnu/openblas-openmp), libgomp, libpng,
# zlib, cJSON, libmicrohttpd, libcurl (Label Studio task images); with MARSSEG_MPI=1 also Open MPI (libmpi, mpirun) and the ssh client
# its launcher uses to reach other hosts.
ARG MARSSEG_MPI=0
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libopenblas0-openmp libgomp1 libpng16-16 zlib1g libcjson1 libmicrohttpd12 libcurl4 \
      $(if [ "$MARSSEG_MPI" = 1 ]; then echo libopenmpi3 openmpi-bin openssh-client; fi) \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 marsseg \
 && useradd --uid 10001 --gid marsseg --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin marsseg \
 && mkdir -p /data \
 && chown marsseg:marsseg /data

COPY --from=build /src/build/marsseg /usr/local/bin/marsseg
COPY static/ /opt/marsseg/static/
COPY datasets/sample.npz /opt/marsseg/datasets/sample.npz
# models/default.npz is the bundled default model: whatever models/ holds ships. Without it the
# service still starts and /segment answers 503 until a job's model is trained and activated.
COPY models/ /opt/marsseg/models/

ENV MARSSEG_HOST=0.0.0.0 \
    MARSSEG_PORT=8080 \
    MARSSEG_DATA_DIR=/data \
    MARSSEG_MODEL=/opt/marsseg/models/default.npz \
    MARSSEG_DATASET=/opt/marsseg/datasets/sample.npz \
    MARSSEG_STATIC_DIR=/opt/marsseg/static \
    OMPI_MCA_btl_vader_single_copy_mechanism=none
# (Open MPI: a container may not ptrace its peers, which shared memory's single-copy transfer
# needs; without it the ranks copy through /dev/shm: give it room with --shm-size.)

# A new named volume starts as a copy of the image's /data, so it is owned by marsseg.
VOLUME /data
# Relative paths of CLI subcommands (train --out runs/x, ...) land on the volume too.
WORKDIR /data
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM

# GET /healthz with bash's /dev/tcp: bash is already in the image; curl would add 12 MB
# (16 packages: libcurl, nghttp2, ssh2, ldap, kerberos...) for one request. Follows MARSSEG_PORT;
# if you move the port with --port instead, move it with MARSSEG_PORT (or override HEALTHCHECK).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${MARSSEG_PORT:-8080} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 4 status <&3 && [[ $status == HTTP/1.?' 200 '* ]]"]

ENTRYPOINT ["marsseg"]
CMD ["serve"]
