# The CPU base: Debian's Python 3.11 with venv, on the debootstrapped Debian (build.sh).
ARG DEBIAN_IMAGE=spira-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
