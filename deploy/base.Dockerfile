# The base of InferScale's CPU images: Debian bookworm (minbase, made by debootstrap and imported
# by deploy/build-images.sh, since no image registry is assumed) with Python 3.11 and the shared
# libraries that the wheels link against: libpython for Triton's python-backend stub, libgomp for
# llama.cpp. Built by deploy/build-images.sh as inferscale/base:VERSION.
FROM inferscale/debian:bookworm-minbase

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8

# Upstream versions are pinned; the Debian revision may move with bookworm's security fixes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11=3.11.2-* python3.11-venv=3.11.2-* libpython3.11=3.11.2-* libgomp1=12.2.0-* \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

# Every InferScale process runs as this user; volumes mounted at /var/lib/inferscale start owned by it.
RUN groupadd --system --gid 10001 inferscale \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/inferscale --shell /usr/sbin/nologin inferscale \
    && mkdir -p /var/lib/inferscale && chown 10001:10001 /var/lib/inferscale
