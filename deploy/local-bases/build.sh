#!/usr/bin/env bash
# Base images made from Debian's packages, for machines that reach no image registry.
#
#   deploy/local-bases/build.sh        # prints the variables that select them, e.g.
#   eval "$(deploy/local-bases/build.sh)" && docker build --build-arg BASE_IMAGE="$BASE_IMAGE" .
#
# Images (each is built only if missing; FORCE=1 rebuilds them all):
#   spira-local/debian:bookworm      debootstrap --variant=minbase of Debian bookworm, imported
#   spira-local/python:3.11-bookworm Debian's python3.11 + venv       (BASE_IMAGE, CPU)
#   spira-local/cuda:bookworm        the same + the NVIDIA runtime variables (BASE_IMAGE, CUDA
#                                    stand-in: the CUDA libraries come from the lock's wheels)
#   spira-local/postgres:15-bookworm Debian's postgresql-15 behind the official image's
#                                    interface (POSTGRES_* variables, initdb.d, PGDATA)
#
# Containers reach Debian and PyPI through whatever this machine trusts: its CA bundle
# (SPIRA_CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt) is copied into the Debian base
# and SSL_CERT_FILE, PIP_CERT and REQUESTS_CA_BUNDLE point at it. The mirror is the first one
# in this machine's apt sources (DEBIAN_MIRROR overrides). The root file system is made under
# SPIRA_ROOTFS_DIR (default /var/tmp/spira-local-bases), outside the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${SPIRA_LOCAL_PREFIX:-spira-local}
rootfs_dir=${SPIRA_ROOTFS_DIR:-/var/tmp/spira-local-bases}
ca_bundle=${SPIRA_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
suite=bookworm

log() { echo "[local-bases] $*" >&2; }
have() { [ -z "${FORCE:-}" ] && docker image inspect "$1" >/dev/null 2>&1; }

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^URIs: *[^ ]+/debian$' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | head -n1 | awk '{print $2}')
  [ -n "$mirror" ] || mirror=$(grep -hoE '^deb +[^ ]+/debian ' /etc/apt/sources.list 2>/dev/null \
    | head -n1 | awk '{print $2}')
  mirror=${mirror:-http://deb.debian.org/debian}
fi

debian="$prefix/debian:$suite"
if ! have "$debian"; then
  command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; exit 1; }
  [ -r "$ca_bundle" ] || { log "no CA bundle at $ca_bundle (set SPIRA_CA_BUNDLE)"; exit 1; }
  target="$rootfs_dir/$suite"
  rm -rf "$target" && mkdir -p "$rootfs_dir"
  log "debootstrap --variant=minbase $suite from $mirror into $target"
  debootstrap --variant=minbase --include=ca-certificates "$suite" "$target" "$mirror" >&2
  # apt inside the images: the same suites as this machine, and the same tolerance of a
  # snapshot mirror whose Release files are past their Valid-Until date
  security=${mirror%/debian}/debian-security
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$mirror" "$suite" "$mirror" "$suite" "$security" "$suite" > "$target/etc/apt/sources.list"
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' \
    > "$target/etc/apt/apt.conf.d/99spira-snapshot-mirror"
  printf 'APT::Install-Recommends "false";\n' > "$target/etc/apt/apt.conf.d/99spira-no-recommends"
  install -D -m 0644 "$ca_bundle" "$target/usr/local/share/spira/ca-bundle.crt"
  rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/lib/apt/lists/*
  ca=/usr/local/share/spira/ca-bundle.crt
  log "docker import -> $debian"
  tar -C "$target" -c . | docker import \
    --change "ENV SSL_CERT_FILE=$ca PIP_CERT=$ca REQUESTS_CA_BUNDLE=$ca CURL_CA_BUNDLE=$ca" \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8" \
    --change 'CMD ["bash"]' - "$debian" >&2
  rm -rf "$target"
fi

build() {  # build NAME DOCKERFILE
  if ! have "$1"; then
    log "docker build -> $1"
    docker build -q --build-arg DEBIAN_IMAGE="$debian" --build-arg PYTHON_IMAGE="$prefix/python:3.11-$suite" \
      -t "$1" -f "$here/$2" "$here" >&2
  fi
}
build "$prefix/python:3.11-$suite" python.Dockerfile
build "$prefix/cuda:$suite" cuda.Dockerfile
build "$prefix/postgres:15-$suite" postgres.Dockerfile

echo "export BASE_IMAGE=$prefix/python:3.11-$suite"
echo "export CUDA_BASE_IMAGE=$prefix/cuda:$suite"
echo "export POSTGRES_IMAGE=$prefix/postgres:15-$suite"
