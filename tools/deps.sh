#!/usr/bin/env bash
# Install the Debian packages marsseg builds against, if any is missing.
# Run by `make` automatically (via the build/.deps stamp); as non-root it prints the apt-get line.
set -euo pipefail
# wrk and valgrind: the load and memcheck tests of the service (tests/test_server_load.c, _valgrind.c);
# nodejs: `node --test` of the dashboard's modules (tests/test_web_units.c)
PKGS="gcc make libopenblas-openmp-dev libpng-dev zlib1g-dev libcjson-dev libmicrohttpd-dev libcurl4-openssl-dev pkg-config curl wrk valgrind nodejs"
missing=""
# openmpi-bin, libopenmpi-dev: the MPI build (make MPI=1, build-mpi/) and its tests under mpirun
PKGS="$PKGS openmpi-bin libopenmpi-dev"
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "marsseg: missing Debian packages:$missing" >&2
  echo "run:  sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi
echo "marsseg: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
